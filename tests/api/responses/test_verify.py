"""POST /v1/requests/{id}/verify for a /v1/responses request: its instructions, input and
previous_response_id exactly as sent are what the record commits to, and a deterministic one replays."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import openai
from click.testing import CliRunner, Result

from pinaivu_local.cli import main
from tests.helpers import AUTH, RunningServer

INPUT: Any = [  # the SDK types items narrowly; these are as a client sends them
    {"role": "user", "content": [{"type": "input_text", "text": "Count to three."}]},
    {"role": "assistant", "content": "One, two"},
    {"role": "user", "content": "Go on."},
]


def recorded(server: RunningServer, response: Any) -> str:
    """The response's request_id, once the log holds its record (written in the background)."""
    request_id = str((response.model_extra or {})["request_id"])
    deadline = time.monotonic() + 10
    while httpx.get(f"{server.v1}/requests/{request_id}", headers=AUTH, timeout=10).status_code != 200:
        assert time.monotonic() < deadline, "the request was never logged"
        time.sleep(0.05)
    return request_id


def verify(server: RunningServer, request_id: str, **body: Any) -> dict[str, Any]:
    answer = httpx.post(f"{server.v1}/requests/{request_id}/verify", headers=AUTH, json=body, timeout=60)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def test_a_response_verifies_and_replays(server: RunningServer, client: openai.OpenAI) -> None:
    made = client.responses.create(
        model="llama3.2:1b",
        instructions="Be brief.",
        input=INPUT,
        temperature=0,
        max_output_tokens=8,
    )
    request_id = recorded(server, made)
    assert httpx.get(f"{server.v1}/requests/{request_id}", headers=AUTH).json()["kind"] == "responses"
    verdict = verify(server, request_id, instructions="Be brief.", input=INPUT, output=made.output_text)
    assert verdict["verified"] is True and verdict["input_matches"] and verdict["output_matches"]
    assert verdict["replay"]["performed"] is True and verdict["replay"]["reproduced"] is True

    tampered = [*INPUT[:-1], {"role": "user", "content": "Stop."}]
    wrong = verify(server, request_id, instructions="Be brief.", input=tampered, output=made.output_text)
    assert wrong["input_matches"] is False and wrong["verified"] is False and wrong["replay"] is None
    # The instructions are part of the commitment, and so is the input's exact shape.
    assert verify(server, request_id, input=INPUT, output=made.output_text)["input_matches"] is False
    as_string = [{**INPUT[0], "content": "Count to three."}, *INPUT[1:]]
    assert verify(server, request_id, instructions="Be brief.", input=as_string, output="x")["input_matches"] is False
    assert verify(server, request_id, instructions="Be brief.", input=INPUT, output="x")["output_matches"] is False


def test_a_continuation_commits_to_the_response_it_continues(server: RunningServer, client: openai.OpenAI) -> None:
    first = client.responses.create(model="llama3.2:1b", input="Hello", temperature=0, max_output_tokens=4)
    second = client.responses.create(
        model="llama3.2:1b", input="And?", previous_response_id=first.id, temperature=0, max_output_tokens=4
    )
    request_id = recorded(server, second)
    sent = {"input": "And?", "previous_response_id": first.id, "output": second.output_text}
    verdict = verify(server, request_id, **sent)
    assert verdict["verified"] is True
    assert verdict["replay"]["performed"] is True and verdict["replay"]["reproduced"] is True
    assert verify(server, request_id, **{**sent, "previous_response_id": "resp_other"})["input_matches"] is False

    client.responses.delete(first.id)  # the conversation it continued is gone: hashes still check
    gone = verify(server, request_id, **sent)
    assert gone["verified"] is True and gone["replay"]["performed"] is False
    assert first.id in gone["replay"]["reason"]


def test_its_structure_fields_are_needed_to_replay(server: RunningServer, client: openai.OpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {"n": {"type": "integer"}},
        "required": ["n"],
        "additionalProperties": False,
    }
    fmt: Any = {"format": {"type": "json_schema", "name": "count", "schema": schema, "strict": True}}
    made = client.responses.create(
        model="llama3.2:1b",
        input="A number",
        text=fmt,
        temperature=0,
        max_output_tokens=16,
    )
    request_id = recorded(server, made)
    verdict = verify(server, request_id, input="A number", text=fmt, output=made.output_text)
    assert verdict["verified"] is True and verdict["replay"]["reproduced"] is True
    without = verify(server, request_id, input="A number", output=made.output_text)
    assert without["verified"] is True and without["replay"]["performed"] is False
    refused = httpx.post(
        f"{server.v1}/requests/{request_id}/verify",
        headers=AUTH,
        json={"input": "A number", "output": "x", "tools": [{"type": "web_search"}]},
    )
    assert refused.status_code == 422 and "web_search" in refused.text


def test_its_receipt_checks_offline(server: RunningServer, tmp_path: Path) -> None:
    sent = {"model": "llama3.2:1b", "instructions": "Be brief.", "input": INPUT, "max_output_tokens": 4}
    answer = httpx.post(f"{server.v1}/responses", headers=AUTH, json=sent, timeout=60)
    files = {name: tmp_path / name for name in ("receipt", "node", "input", "response")}
    files["receipt"].write_text(answer.headers["x-pinaivu-receipt"])
    files["node"].write_text(httpx.get(f"{server.v1}/node", headers=AUTH, timeout=10).text)
    files["input"].write_text(json.dumps(sent))  # the whole body as sent
    files["response"].write_text(answer.text)

    def check() -> Result:
        args = [str(files["receipt"]), "--public-key", str(files["node"])]
        args += ["--input", str(files["input"]), "--response", str(files["response"])]
        return CliRunner().invoke(main, ["receipts", "verify", *args])

    assert check().exit_code == 0, check().output
    files["input"].write_text(json.dumps({**sent, "instructions": "Be long."}))
    assert check().exit_code == 4  # the input does not match
    files["input"].write_text(json.dumps(sent))
    changed = answer.json()
    changed["output"][0]["content"][0]["text"] += "!"
    files["response"].write_text(json.dumps(changed))
    assert check().exit_code == 5  # the output does not match
