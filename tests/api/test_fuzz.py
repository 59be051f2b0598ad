"""Property-based requests over the whole OpenAPI schema against the real server (schemathesis).

Every route gets generated bodies, parameters and headers, valid and not: no answer may be a 5xx,
every answer must match what the schema documents for its status, and since the document describes
bodies as they are validated, most generated completions must get past validation to the engine.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jsonschema
from openai.types import Completion
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from tests.api.fuzz_hooks import TARGETS_ENV, narrow
from tests.helpers import AUTH, TEST_KEY, RunningServer

MIN_REQUESTS = 1000
# Bodies the document allows, per generating route, at the least (about 490 for chat, 130 for text).
MIN_ALLOWED = 100
MODELS = ["llama3.2:1b", "llama3.2:3b"]
GENERATING: dict[str, type[ChatCompletion] | type[Completion] | type[Response]] = {
    "/v1/chat/completions": ChatCompletion,
    "/v1/completions": Completion,
    "/v1/responses": Response,
}
# Of the generated completions whose bodies the document allows, at least this share is answered by
# the engine (200); the rest break rules JSON Schema cannot state (a tool named twice) or carry a
# header out of range. Before the document described bodies as validated, none was: 0 of 939.
MIN_ANSWERED = 0.6
# JSON Schema counts 1.0 as an integer; the server parses JSON strictly, as OpenAI does, and does not.
_STRICT = jsonschema.Draft202012Validator.TYPE_CHECKER.redefine(
    "integer", lambda _, value: isinstance(value, int) and not isinstance(value, bool)
)
_Validator = jsonschema.validators.extend(jsonschema.Draft202012Validator, type_checker=_STRICT)


def test_generated_requests_get_no_5xx_and_match_the_schema(
    server_factory: Callable[..., RunningServer], two_models: Path, tmp_path: Path
) -> None:
    # Its own server: the fuzzer creates and changes keys, and must not trip the shared one's limits.
    server = server_factory(
        "--models-file",
        str(two_models),
        env={"PINAIVU_DEFAULT_RPM": "1000000", "PINAIVU_DEFAULT_TPM": "1000000000"},
    )
    targets = {"models": MODELS, "model_id": MODELS[0], "max_tokens": 4, **_existing_ids(server)}
    st = Path(sys.executable).with_name("st")
    har = tmp_path / "fuzz.har"
    run = subprocess.run(
        [
            str(st),
            "run",
            f"{server.base_url}/docs/openapi.json",
            "--checks",
            "not_a_server_error,response_schema_conformance,content_type_conformance",
            "--header",
            f"Authorization: Bearer {TEST_KEY}",
            "--phases",
            "examples,coverage,fuzzing",
            "--max-examples",
            "40",
            # One worker: with two, CPython 3.11's compiler fails now and then inside schemathesis's own
            # threads ("AST constructor recursion depth mismatch"), an error of the tool, not of our API.
            "--workers",
            "1",
            # The same cases every run (hypothesis' derandomize), so a failure in CI reproduces here.
            "--generation-deterministic",
            # Hypothesis' own health checks time the generation of test data, not our API: on a
            # busy 2-core machine they fail a run that found nothing wrong.
            "--suppress-health-check",
            "all",
            "--report",
            "har",
            "--report-har-path",
            str(har),
            "--no-color",
        ],
        cwd=tmp_path,
        env={
            **os.environ,
            "SCHEMATHESIS_TELEMETRY": "false",
            "SCHEMATHESIS_HOOKS": "tests.api.fuzz_hooks",
            "PYTHONPATH": str(Path(__file__).parents[2]),
            TARGETS_ENV: json.dumps(targets),
        },
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-6000:]
    generated = re.search(r"(\d+) generated", output)
    assert generated is not None and int(generated.group(1)) >= MIN_REQUESTS, output[-2000:]
    assert "Traceback" not in server.log()

    document = httpx.get(f"{server.base_url}/docs/openapi.json", timeout=10).json()
    narrow(document, targets)
    for path, shape in GENERATING.items():
        schema = document["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
        allowed = [answer for answer in _answers(har, path) if _Validator(schema).is_valid(answer.body)]
        statuses = Counter(answer.status for answer in allowed)
        assert len(allowed) >= MIN_ALLOWED, f"{path}: {statuses}"
        # What the document allows, validation accepts: the description is the validation.
        assert statuses[422] == 0, [answer.body for answer in allowed if answer.status == 422][:3]
        assert statuses[200] >= MIN_ANSWERED * len(allowed), f"{path}: {statuses}"
        for answer in allowed:
            if answer.status == 200:
                _check_shape(shape, answer.kind, answer.text)


def _existing_ids(server: RunningServer) -> dict[str, str]:
    """A request id the log holds and a key the fuzzer may change, revoke and rotate."""
    completion = httpx.post(
        f"{server.v1}/chat/completions",
        json={"model": MODELS[0], "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2},
        headers=AUTH,
        timeout=60,
    ).json()
    request_id = completion["request_id"]
    deadline = time.monotonic() + 10  # the log writes its records in the background
    while httpx.get(f"{server.v1}/requests/{request_id}", headers=AUTH, timeout=10).status_code != 200:
        assert time.monotonic() < deadline, "the seed request was never logged"
        time.sleep(0.05)
    key = httpx.post(f"{server.base_url}/admin/keys", json={"name": "fuzzed"}, headers=AUTH, timeout=10).json()
    return {"request_id": request_id, "key_id": key["id"]}


@dataclass(frozen=True)
class _Answer:
    body: Any  # the JSON body sent (None if it was not JSON)
    status: int
    kind: str  # the response's content type
    text: str


def _answers(har: Path, path: str) -> list[_Answer]:
    """Each POST to `path` in the report: what was sent and what came back."""
    found = []
    for entry in json.loads(har.read_text())["log"]["entries"]:
        request, response = entry["request"], entry["response"]
        if request["method"] == "POST" and httpx.URL(request["url"]).path == path:
            try:
                body = json.loads(request.get("postData", {}).get("text") or "null")
            except json.JSONDecodeError:
                body = None
            content = response["content"]
            found.append(_Answer(body, response["status"], content["mimeType"], content.get("text", "")))
    return found


def _check_shape(shape: type[ChatCompletion] | type[Completion] | type[Response], kind: str, text: str) -> None:
    """A 200 is a completion in OpenAI's shape, or a stream of chunks ending in [DONE] (of events, for Responses)."""
    if not kind.startswith("text/event-stream"):
        shape.model_validate_json(text)
        return
    if shape is Response:
        events = [line.removeprefix("data: ") for line in text.splitlines() if line.startswith("data: ")]
        parsed = [TypeAdapter(ResponseStreamEvent).validate_json(event) for event in events]
        assert parsed[-1].type in ("response.completed", "response.incomplete"), text[-500:]
        return
    events = [line.removeprefix("data: ") for line in text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]", text[-500:]
    for event in events[:-1]:
        if shape is ChatCompletion:
            ChatCompletionChunk.model_validate_json(event)
            continue
        # A text completion's chunks are Completions whose finish_reason is null until the last
        # (OpenAI streams them so; its type, written for whole completions, has no null).
        chunk = json.loads(event)
        for choice in chunk["choices"]:
            choice["finish_reason"] = choice["finish_reason"] or "stop"
        Completion.model_validate(chunk)
