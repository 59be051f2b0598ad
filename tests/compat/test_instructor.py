"""instructor on the openai client, in its TOOLS and JSON_SCHEMA modes."""

from __future__ import annotations

import instructor
import openai
import pytest

from tests.compat.conftest import MODEL, TRIES
from tests.compat.models import Event, Person


@pytest.mark.parametrize("mode", [instructor.Mode.TOOLS, instructor.Mode.JSON_SCHEMA])
@pytest.mark.parametrize("model", [Person, Event])
def test_a_response_model(mode: instructor.Mode, model: type[Person] | type[Event]) -> None:
    client = instructor.from_openai(openai.OpenAI(max_retries=0), mode=mode)
    for attempt in range(TRIES):
        out = client.chat.completions.create(
            model=MODEL,
            response_model=model,
            messages=[{"role": "user", "content": f"Fill it in ({attempt})."}],
            max_retries=0,
        )
        assert isinstance(out, model)
