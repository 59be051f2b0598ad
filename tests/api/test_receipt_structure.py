"""Receipt format 2 over a real server: tools are signed, a tool call is committed as the model wrote it,
and both the online and the offline checks tell one request's tools from another's; format 1 still verifies."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from pinaivu_local.cli import main
from pinaivu_local.receipts.document import SignedReceipt
from pinaivu_local.receipts.identity import load_or_create
from pinaivu_local.requestlog.commitment import output_digest
from tests.helpers import AUTH, RunningServer, TinyModels, start_server, write_catalog
from tests.receipts.test_structure import old_receipt

PARAMETERS = {
    "type": "object",
    "properties": {"a": {"type": "integer", "minimum": 0, "maximum": 9}},
    "required": ["a"],
    "additionalProperties": False,
}
TOOLS_A = [{"type": "function", "function": {"name": "add", "parameters": PARAMETERS}}]
TOOLS_B = [{"type": "function", "function": {"name": "sub", "parameters": PARAMETERS}}]
MESSAGES = [{"role": "user", "content": "Add it"}]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_models: TinyModels) -> Iterator[RunningServer]:
    workdir = tmp_path_factory.mktemp("receipt-structure")
    catalog = write_catalog(
        workdir / "models.toml", {"llama3.2:1b": {"path": str(tiny_models.f16), "n_ctx": 4096, "parallel": 1}}
    )
    running = start_server(workdir, "--models-file", str(catalog))
    try:
        yield running
    finally:
        running.stop()


def body(tools: list[Any]) -> dict[str, Any]:
    return {"model": "llama3.2:1b", "messages": MESSAGES, "temperature": 0, "max_tokens": 40, "tools": tools,
            "tool_choice": "required"}  # fmt: skip


def called(server: RunningServer, sent: dict[str, Any]) -> tuple[dict[str, Any], SignedReceipt]:
    response = httpx.post(f"{server.v1}/chat/completions", json=sent, headers=AUTH, timeout=120)
    assert response.status_code == 200, response.text
    return response.json(), SignedReceipt.from_envelope(json.loads(response.headers["x-pinaivu-receipt"]))


def test_tools_are_signed_and_told_apart_online_and_offline(server: RunningServer, tmp_path: Path) -> None:
    answer_a, receipt_a = called(server, body(TOOLS_A))
    _, receipt_b = called(server, body(TOOLS_B))
    a, b = receipt_a.document, receipt_b.document
    assert a["format"] == b["format"] == "pinaivu-receipt/2"
    assert a["input_sha256"] == b["input_sha256"]  # the same messages
    assert a["structure_sha256"] != b["structure_sha256"] and None not in (a["structure_sha256"], b["structure_sha256"])

    # The output commitment is the model's own text of the call, which the answer's tool call is read from:
    # its name and its arguments, byte for byte, so another argument is another output.
    call = answer_a["choices"][0]["message"]["tool_calls"][0]["function"]
    written = f'{{"name": "{call["name"]}", "parameters": {call["arguments"]}}}'
    assert a["output_sha256"] == output_digest(written)
    assert a["output_sha256"] != output_digest(written.replace(call["arguments"], '{"a": 10}'))

    # Online: each request verifies only with its own tools.
    verify = f"{server.v1}/requests/{answer_a['request_id']}/verify"
    kept = {"messages": MESSAGES, "output": written, "replay": False}
    own = httpx.post(verify, json={**kept, "tools": TOOLS_A, "tool_choice": "required"}, headers=AUTH).json()
    assert own["structure_matches"] is True and own["verified"] is True
    other = httpx.post(verify, json={**kept, "tools": TOOLS_B, "tool_choice": "required"}, headers=AUTH).json()
    assert other["structure_matches"] is False and other["verified"] is False and other["input_matches"] is True
    unsaid = httpx.post(verify, json=kept, headers=AUTH).json()
    assert unsaid["structure_matches"] is None and unsaid["verified"] is True  # as before: tools not compared

    # Offline: the whole request body as --input, the keys from the node.
    files = {"receipt": tmp_path / "receipt.json", "output": tmp_path / "output.txt", "input": tmp_path / "in.json"}
    files["receipt"].write_text(json.dumps(receipt_a.envelope()))
    files["output"].write_text(written)

    def offline(sent: dict[str, Any]) -> int:
        files["input"].write_text(json.dumps(sent))
        args = ["receipts", "verify", str(files["receipt"]), "--node", server.base_url, "--input", str(files["input"])]
        return CliRunner().invoke(main, [*args, "--output", str(files["output"])]).exit_code

    assert offline(body(TOOLS_A)) == 0
    assert offline(body(TOOLS_B)) == 4


def test_a_version_1_receipt_still_verifies_online_and_offline(server: RunningServer, tmp_path: Path) -> None:
    old = old_receipt(load_or_create(server.data_dir / "identity"))  # signed with the running node's key
    verdict = httpx.post(f"{server.v1}/receipts/verify", json=old.envelope(), headers=AUTH).json()
    assert verdict["valid"] is True and verdict["outcome"] == "valid"
    forged = {**old.envelope(), "receipt": {**old.document, "completion_tokens": 99}}
    assert httpx.post(f"{server.v1}/receipts/verify", json=forged, headers=AUTH).json()["outcome"] == "bad_signature"
    saved = tmp_path / "old.json"
    saved.write_text(json.dumps(old.envelope()))
    result = CliRunner().invoke(main, ["receipts", "verify", str(saved), "--node", server.base_url])
    assert result.exit_code == 0, result.output
