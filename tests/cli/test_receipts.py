"""`receipts verify` and `identity`: exit codes for every way a receipt, input or output can be wrong."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from pinaivu_local.cli import main
from pinaivu_local.receipts.document import sign
from pinaivu_local.receipts.identity import load_or_create
from tests.receipts.test_verify import MESSAGES, OUTPUT, record


@pytest.fixture
def saved(tmp_path: Path) -> dict[str, Path]:
    """What a careful client keeps: the receipt, the node's /v1/node answer, its input and output."""
    node = load_or_create(tmp_path / "node")
    files = {
        "receipt": tmp_path / "receipt.json",
        "node": tmp_path / "node.json",
        "input": tmp_path / "input.json",
        "output": tmp_path / "output.txt",
    }
    files["receipt"].write_text(json.dumps(sign(record(), node).envelope(), ensure_ascii=False))
    files["node"].write_text(json.dumps({"object": "node", **node.public()}))
    files["input"].write_text(json.dumps(MESSAGES, ensure_ascii=False))  # what the commitment covers
    files["output"].write_text(OUTPUT)
    return files


def verify(files: dict[str, Path], *extra: str) -> Result:
    args = ["receipts", "verify", str(files["receipt"]), "--public-key", str(files["node"])]
    return CliRunner().invoke(main, [*args, "--input", str(files["input"]), "--output", str(files["output"]), *extra])


def test_a_kept_answer_verifies(saved: dict[str, Path]) -> None:
    result = verify(saved)
    assert result.exit_code == 0, result.output
    assert "llama3.2:1b (model file sha256 " + "ab" * 32 in result.output
    report = json.loads(verify(saved, "--json").output)
    assert report["valid"] is True and [c["outcome"] for c in report["checks"]] == ["valid"] * 3


def test_any_changed_byte_of_the_receipt_fails(saved: dict[str, Path]) -> None:
    original = saved["receipt"].read_bytes()
    codes = set()
    for i in range(len(original)):
        changed = bytearray(original)
        changed[i] = ord("x") if changed[i] != ord("x") else ord("y")
        saved["receipt"].write_bytes(bytes(changed))
        code = verify(saved).exit_code
        assert code in (1, 3, 6), f"byte {i}: exit {code}"
        codes.add(code)
    assert codes == {1, 3, 6}  # altered values, an unknown key id, and broken JSON or fields


def test_any_changed_byte_of_the_input_fails_with_4(saved: dict[str, Path]) -> None:
    original = saved["input"].read_bytes()
    for i in range(len(original)):
        changed = bytearray(original)
        changed[i] = ord("x") if changed[i] != ord("x") else ord("y")
        saved["input"].write_bytes(bytes(changed))
        assert verify(saved).exit_code == 4, f"byte {i}"


def test_any_changed_byte_of_the_output_fails_with_5(saved: dict[str, Path]) -> None:
    original = saved["output"].read_bytes()
    for i in range(len(original)):
        changed = bytearray(original)
        changed[i] ^= 0x01
        saved["output"].write_bytes(bytes(changed))
        assert verify(saved).exit_code == 5, f"byte {i}"
    saved["output"].write_bytes(original + b"\n")
    assert verify(saved).exit_code == 5


def test_another_nodes_keys_fail_with_3(saved: dict[str, Path], tmp_path: Path) -> None:
    other = load_or_create(tmp_path / "other")
    saved["node"].write_text(json.dumps(other.public()))
    assert verify(saved).exit_code == 3
    result = CliRunner().invoke(
        main, ["receipts", "verify", str(saved["receipt"]), "--public-key", other.current.public_key]
    )
    assert result.exit_code == 3 and "not among the trusted keys" in result.output


def test_a_saved_response_body_gives_the_output(saved: dict[str, Path], tmp_path: Path) -> None:
    body = tmp_path / "response.json"
    body.write_text(json.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": OUTPUT}}]}))
    args = ["receipts", "verify", str(saved["receipt"]), "--public-key", str(saved["node"]), "--response", str(body)]
    assert CliRunner().invoke(main, args).exit_code == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give --public-key or --node"),
        (["--public-key", "a", "--node", "http://127.0.0.1:1"], "give --public-key or --node"),
    ],
)
def test_which_keys_to_trust_must_be_said(saved: dict[str, Path], args: list[str], message: str) -> None:
    result = CliRunner().invoke(main, ["receipts", "verify", str(saved["receipt"]), *args])
    assert result.exit_code == 2 and message in result.output


def test_unusable_keys_fail_with_7(saved: dict[str, Path]) -> None:
    unreachable = CliRunner().invoke(
        main, ["receipts", "verify", str(saved["receipt"]), "--node", "http://127.0.0.1:9"]
    )
    assert unreachable.exit_code == 7 and "cannot get the node's keys" in unreachable.output
    short = CliRunner().invoke(main, ["receipts", "verify", str(saved["receipt"]), "--public-key", "AAAA"])
    assert short.exit_code == 7 and "32 bytes" in short.output


def test_identity_show_and_rotate(tmp_path: Path) -> None:
    shown = CliRunner().invoke(main, ["identity", "show", "--data-dir", str(tmp_path), "--json"])
    assert shown.exit_code == 0, shown.output
    before = json.loads(shown.output)
    rotated = CliRunner().invoke(main, ["identity", "rotate", "--data-dir", str(tmp_path)])
    assert rotated.exit_code == 0 and "until it is restarted" in rotated.output
    after = json.loads(CliRunner().invoke(main, ["identity", "show", "--data-dir", str(tmp_path), "--json"]).output)
    assert after["node_id"] == before["node_id"]
    assert after["retired_keys"][0]["key_id"] == before["current_key"]["key_id"]
    assert after["current_key"]["key_id"] != before["current_key"]["key_id"]
