"""Signed receipts end to end: the real server signs, the openai client carries them, the CLI proves
offline which node and model file produced an answer, across restarts and identity rotation."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import openai

from tests.helpers import AUTH, TEST_KEY, RunningServer, TinyModels

MESSAGES = [{"role": "user", "content": "Prove it"}]


def chat(server: RunningServer, **extra: Any) -> tuple[Any, dict[str, Any]]:
    """A whole chat through the openai client: the completion and the receipt from its header."""
    client = openai.OpenAI(base_url=server.v1, api_key=TEST_KEY, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="llama3.2:1b", messages=MESSAGES, max_tokens=5, temperature=0, **extra
    )
    return raw.parse(), json.loads(raw.headers["x-pinaivu-receipt"])


def streamed(server: RunningServer, **extra: Any) -> tuple[str, list[Any]]:
    """A streamed chat through the openai client: the text and every chunk."""
    client = openai.OpenAI(base_url=server.v1, api_key=TEST_KEY, max_retries=0)
    chunks = list(
        client.chat.completions.create(
            model="llama3.2:1b", messages=MESSAGES, max_tokens=5, temperature=0, stream=True, **extra
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return text, chunks


def record_of(server: RunningServer, request_id: str) -> dict[str, Any]:
    response = httpx.get(f"{server.v1}/requests/{request_id}", headers=AUTH)
    assert response.status_code == 200
    return dict(response.json())


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pinaivu_local", *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_every_answer_is_signed_where_clients_find_it(
    server_factory: Callable[..., RunningServer], two_models: Path, tiny_models: TinyModels
) -> None:
    server = server_factory("--models-file", str(two_models))
    node = httpx.get(f"{server.base_url}/v1/node").json()  # no key needed
    assert node["object"] == "node" and node["receipt_format"] == "pinaivu-receipt/2"
    assert node["current_key"]["algorithm"] == "ed25519" and node["retired_keys"] == []

    completion, receipt = chat(server)
    document = receipt["receipt"]
    assert document["request_id"] == completion.request_id  # type: ignore[attr-defined]
    assert document["node_id"] == node["node_id"] and document["key_id"] == node["current_key"]["key_id"]
    assert document["model_sha256"] == hashlib.sha256(tiny_models.f16.read_bytes()).hexdigest()
    assert document["completion_tokens"] == completion.usage.completion_tokens  # type: ignore[union-attr]
    assert document["finish_reason"] == completion.choices[0].finish_reason
    assert record_of(server, document["request_id"])["receipt"] == receipt

    # Streams: the last chunk before [DONE] carries it, with or without the usage chunk.
    for options in ({}, {"stream_options": {"include_usage": True}}):
        text, chunks = streamed(server, **options)
        last = chunks[-1].model_extra["pinaivu_receipt"]
        assert all("pinaivu_receipt" not in (c.model_extra or {}) for c in chunks[:-1])
        assert last == record_of(server, chunks[0].request_id)["receipt"]
        assert last["receipt"]["output_sha256"] == hashlib.sha256(text.encode()).hexdigest()

    verdict = httpx.post(f"{server.v1}/receipts/verify", headers=AUTH, json=receipt).json()
    assert verdict["valid"] is True
    forged = {**receipt, "receipt": {**document, "completion_tokens": document["completion_tokens"] + 1}}
    verdict = httpx.post(f"{server.v1}/receipts/verify", headers=AUTH, json=forged).json()
    assert verdict == {**verdict, "valid": False, "outcome": "bad_signature"}


def test_no_receipt_for_what_did_not_complete(server_factory: Callable[..., RunningServer], two_models: Path) -> None:
    server = server_factory("--models-file", str(two_models))
    bad = httpx.post(
        f"{server.v1}/chat/completions", headers=AUTH, json={"model": "llama3.2:1b", "messages": MESSAGES, "n": 3}
    )
    assert bad.status_code >= 400 and "x-pinaivu-receipt" not in bad.headers


def test_a_kept_answer_is_proven_offline_across_restart_and_rotation(
    server_factory: Callable[..., RunningServer], two_models: Path, tmp_path: Path
) -> None:
    server = server_factory("--models-file", str(two_models))
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "node.json").write_text(httpx.get(f"{server.base_url}/v1/node").text)
    completion, receipt = chat(server)
    (kept / "receipt.json").write_text(json.dumps(receipt))
    (kept / "messages.json").write_text(json.dumps(MESSAGES))
    (kept / "output.txt").write_text(completion.choices[0].message.content or "")
    server.stop()  # every server stopped: the CLI alone proves it

    files = [str(kept / "receipt.json"), "--input", str(kept / "messages.json"), "--output", str(kept / "output.txt")]
    proof = cli("receipts", "verify", *files, "--public-key", str(kept / "node.json"))
    assert proof.returncode == 0, proof.stdout + proof.stderr
    assert f"on node {receipt['receipt']['node_id']}" in proof.stdout

    rotated = cli("identity", "rotate", "--data-dir", str(server.data_dir))
    assert rotated.returncode == 0, rotated.stderr
    again = server_factory("--models-file", str(two_models), workdir=server.data_dir.parent)
    node = httpx.get(f"{again.base_url}/v1/node").json()
    assert node["node_id"] == receipt["receipt"]["node_id"]
    assert [k["key_id"] for k in node["retired_keys"]] == [receipt["receipt"]["key_id"]]
    assert record_of(again, receipt["receipt"]["request_id"])["receipt"] == receipt  # survives the restart
    _, fresh = chat(again)
    assert fresh["receipt"]["key_id"] == node["current_key"]["key_id"] != receipt["receipt"]["key_id"]
    for saved in (receipt, fresh):  # old and new receipts verify against the node as it is now
        (kept / "r.json").write_text(json.dumps(saved))
        assert cli("receipts", "verify", str(kept / "r.json"), "--node", again.base_url).returncode == 0
    # The node document kept before the rotation does not know the new key.
    assert cli("receipts", "verify", str(kept / "r.json"), "--public-key", str(kept / "node.json")).returncode == 3
