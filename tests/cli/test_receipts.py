"""`receipts verify` and `identity`: exit codes for every way a receipt, input or output can be wrong."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from pinaivu_local.cli import main
from pinaivu_local.receipts.document import sign
from pinaivu_local.receipts.identity import KEY_FILE, PUBLIC_FILE, load_or_create
from tests.helpers import TinyModels, start_server, write_catalog
from tests.receipts.test_verify import MESSAGES, OUTPUT, record

DEEP = "[" * 100_000 + "]" * 100_000  # valid JSON, nested past what Python's parser follows


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
    # the signature, the input, its tools and response format (none, as the receipt says), the output
    assert report["valid"] is True and [c["outcome"] for c in report["checks"]] == ["valid"] * 4


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


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """The real entry point in a child process: what a shell sees."""
    command = [sys.executable, "-m", "pinaivu_local", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    ("where", "code", "line"),
    [
        ("receipt", 6, "FAIL {path} is not a receipt: JSON nested more than 256 levels"),
        ("input", 2, "Error: --input {path}: JSON nested more than 256 levels"),
        ("response", 2, "Error: --response {path}: JSON nested more than 256 levels"),
        ("node", 7, "FAIL the trusted keys are unusable: JSON nested more than 256 levels"),
    ],
)
def test_json_nested_too_deeply_is_one_line_and_its_exit_code(
    saved: dict[str, Path], tmp_path: Path, where: str, code: int, line: str
) -> None:
    """It was a traceback and exit 1, the code of an altered signature."""
    deep = tmp_path / "deep.json"
    deep.write_text(DEEP)
    files = {**saved, where: deep}
    kept = ["--response", str(deep)] if where == "response" else ["--output", str(files["output"])]
    args = [str(files["receipt"]), "--public-key", str(files["node"]), "--input", str(files["input"]), *kept]
    result = run_cli("receipts", "verify", *args)
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr and line.format(path=deep) in result.stderr.splitlines()


@pytest.mark.parametrize("url", ["http://[::1", "http://127.0.0.1:99999", "not a url", "ftp://127.0.0.1"])
def test_a_malformed_node_url_fails_with_7(saved: dict[str, Path], url: str) -> None:
    result = run_cli("receipts", "verify", str(saved["receipt"]), "--node", url)
    assert result.returncode == 7, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("FAIL cannot get the node's keys from ") and len(result.stderr.splitlines()) == 1


def refused_start(workdir: Path, tiny_models: TinyModels) -> str:
    """The one line a server that must not start printed; fails (and stops it) if it started."""
    catalog = write_catalog(workdir / "models.toml", {"llama3.2:1b": {"path": str(tiny_models.f16), "n_ctx": 256}})
    try:
        server = start_server(workdir, "--models-file", str(catalog))
    except RuntimeError as exc:
        output = str(exc).split(":\n", 1)[1].strip()
        assert "Traceback" not in output and len(output.splitlines()) == 1, output
        return output
    server.stop()
    pytest.fail("the server started")


@pytest.mark.parametrize(
    ("part", "mode", "fix"),
    [("", 0o777, "chmod 700"), (KEY_FILE, 0o644, "chmod 600"), (PUBLIC_FILE, 0o666, "chmod 644")],
)
def test_an_identity_other_users_may_touch_stops_the_server(
    tmp_path: Path, tiny_models: TinyModels, part: str, mode: int, fix: str
) -> None:
    """As ssh refuses an open private key: a folder others write, a key others read, a node.json others write."""
    folder = tmp_path / "data" / "identity"
    load_or_create(folder)
    os.chmod(folder / part, mode)
    line = refused_start(tmp_path, tiny_models)
    assert line == (
        f"Error: The node identity {folder / part if part else folder} is "
        f"{'readable' if part == KEY_FILE else 'writable'} by other users (mode {mode:04o}); "
        f"run `{fix} {folder / part if part else folder}`, "
        "and `pinaivu-local identity rotate` if another user may have used it."
    )
    shown = run_cli("identity", "show", "--data-dir", str(tmp_path / "data"))
    assert shown.returncode == 1 and fix in shown.stderr and "Traceback" not in shown.stderr


@pytest.mark.parametrize(
    ("public_key", "reason"),
    [("not base64!", "must be base64"), ("AAAA", "32 bytes"), ("A" * 43 + "=", "not the key named")],
)
def test_a_node_json_listing_an_invalid_key_stops_the_server(
    tmp_path: Path, tiny_models: TinyModels, public_key: str, reason: str
) -> None:
    """Published, such a key made every POST /v1/receipts/verify a 500."""
    folder = tmp_path / "data" / "identity"
    load_or_create(folder)
    listed = json.loads((folder / PUBLIC_FILE).read_text())
    bad = {"key_id": "0123456789abcdef", "public_key": public_key, "created_at": "2025-01-01T00:00:00Z"}
    listed["keys"].append({**bad, "retired_at": "2025-02-01T00:00:00Z"})
    (folder / PUBLIC_FILE).write_text(json.dumps(listed))
    line = refused_start(tmp_path, tiny_models)
    assert line.startswith(f"Error: The node's public identity file {folder / PUBLIC_FILE} lists an invalid public key")
    assert reason in line
