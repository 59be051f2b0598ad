"""Receipt format 2: the request's tools, tool_choice and response format are signed; format 1 still verifies."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from pinaivu_local.api.flow.tool_structure import structure_digest
from pinaivu_local.cli import main
from pinaivu_local.cli.receipts import structure_digest_of
from pinaivu_local.receipts.document import (
    FIELDS_V1,
    FORMAT_V1,
    MalformedReceipt,
    SignedReceipt,
    canonical,
    sign,
)
from pinaivu_local.receipts.identity import NodeIdentity, load_or_create
from pinaivu_local.receipts.verify import Outcome, TrustedKeys, check_signature, check_structure
from tests.receipts.test_verify import MESSAGES, OUTPUT, record

PARAMETERS = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
TOOLS_A = [{"type": "function", "function": {"name": "add", "parameters": PARAMETERS}}]
TOOLS_B = [{"type": "function", "function": {"name": "sub", "parameters": PARAMETERS}}]


def body(tools: list[Any] | None) -> dict[str, Any]:
    """A chat request body as a client kept it."""
    extra = {"tools": tools, "tool_choice": "required"} if tools else {}
    return {"model": "llama3.2:1b", "messages": MESSAGES, "temperature": 0, **extra}


def receipt_for(node: NodeIdentity, sent: dict[str, Any]) -> SignedReceipt:
    """The receipt of a request sent as `sent`: the record keeps its structure digest in its sampling JSON."""
    digest = structure_digest_of(sent, "chat")
    sampling = json.dumps({"temperature": 0, **({"structure_sha256": digest} if digest else {})})
    return sign(record(sampling=sampling), node)


def old_receipt(node: NodeIdentity) -> SignedReceipt:
    """A version-1 receipt, as a node signed them before format 2: no structure_sha256."""
    document = {k: v for k, v in sign(record(), node).document.items() if k in FIELDS_V1}
    document["format"] = FORMAT_V1
    return SignedReceipt(document, node.sign(canonical(document)))


def test_the_same_messages_with_other_tools_sign_other_structures(tmp_path: Path) -> None:
    node = load_or_create(tmp_path)
    a, b, none = receipt_for(node, body(TOOLS_A)), receipt_for(node, body(TOOLS_B)), receipt_for(node, body(None))
    assert a.document["format"] == "pinaivu-receipt/2"
    assert a.document["input_sha256"] == b.document["input_sha256"] == none.document["input_sha256"]
    assert len({a.document["structure_sha256"], b.document["structure_sha256"]}) == 2
    assert none.document["structure_sha256"] is None  # no tools, no response format
    # The digest is the one the request's record keeps (api/openai/protocol.py's structure_fields).
    assert a.document["structure_sha256"] == structure_digest({"tools": TOOLS_A, "tool_choice": "required"})
    for receipt, tools in ((a, TOOLS_A), (b, TOOLS_B), (none, None)):
        for other in (TOOLS_A, TOOLS_B, None):
            finding = check_structure(receipt, structure_digest_of(body(other), "chat"))
            assert (finding.outcome is Outcome.VALID) is (other == tools), (tools, other)


def test_a_changed_structure_digest_breaks_the_signature(tmp_path: Path) -> None:
    node = load_or_create(tmp_path)
    signed = receipt_for(node, body(TOOLS_A))
    trusted = TrustedKeys.from_node_document(node.public())
    assert check_signature(signed, trusted).outcome is Outcome.VALID
    other = receipt_for(node, body(TOOLS_B)).document["structure_sha256"]
    for forged_value in (other, None):
        forged = SignedReceipt({**signed.document, "structure_sha256": forged_value}, signed.signature)
        assert check_signature(forged, trusted).outcome is Outcome.BAD_SIGNATURE


def test_a_version_1_receipt_still_verifies(tmp_path: Path) -> None:
    node = load_or_create(tmp_path)
    old = old_receipt(node)
    assert SignedReceipt.from_envelope(json.loads(json.dumps(old.envelope()))) == old
    assert check_signature(old, TrustedKeys.from_node_document(node.public())).outcome is Outcome.VALID
    finding = check_structure(old, structure_digest_of(body(TOOLS_A), "chat"))
    assert finding.outcome is Outcome.VALID and "version-1" in finding.message


def test_each_version_has_exactly_its_fields(tmp_path: Path) -> None:
    node = load_or_create(tmp_path)
    old, new = old_receipt(node).envelope(), sign(record(), node).envelope()
    with pytest.raises(MalformedReceipt, match="unknown \\['structure_sha256'\\]"):
        SignedReceipt.from_envelope({**old, "receipt": {**old["receipt"], "structure_sha256": None}})
    missing = {k: v for k, v in new["receipt"].items() if k != "structure_sha256"}
    with pytest.raises(MalformedReceipt, match="missing \\['structure_sha256'\\]"):
        SignedReceipt.from_envelope({**new, "receipt": missing})


def test_other_api_families_hash_their_own_structure_fields() -> None:
    messages = {"messages": [{"role": "user", "content": "Hi"}]}
    anthropic_tool = {"name": "add", "input_schema": PARAMETERS}
    assert structure_digest_of(messages, "messages") is None
    with_tools = structure_digest_of({**messages, "tools": [anthropic_tool]}, "messages")
    assert with_tools is not None and with_tools != structure_digest_of(
        {**messages, "tools": [{**anthropic_tool, "name": "sub"}]}, "messages"
    )
    responses_tool = {"type": "function", "name": "add", "parameters": PARAMETERS}
    assert structure_digest_of({"input": "Hi"}, "responses") is None
    assert structure_digest_of({"input": "Hi", "tools": [responses_tool]}, "responses") is not None
    assert structure_digest_of({"input": "Hi", "text": {"format": {"type": "json_object"}}}, "responses") is not None


def cli_verify(tmp_path: Path, receipt: SignedReceipt, node: NodeIdentity, sent: Any) -> int:
    files = {name: tmp_path / f"{name}.json" for name in ("receipt", "node", "input")}
    files["receipt"].write_text(json.dumps(receipt.envelope()))
    files["node"].write_text(json.dumps({"object": "node", **node.public()}))
    files["input"].write_text(json.dumps(sent))
    (tmp_path / "output.txt").write_text(OUTPUT)
    args = ["receipts", "verify", str(files["receipt"]), "--public-key", str(files["node"])]
    args += ["--input", str(files["input"]), "--output", str(tmp_path / "output.txt")]
    return CliRunner().invoke(main, args).exit_code


def test_the_cli_checks_the_tools_of_a_whole_request_body(tmp_path: Path) -> None:
    node = load_or_create(tmp_path / "node")
    signed = receipt_for(node, body(TOOLS_A))
    assert cli_verify(tmp_path, signed, node, body(TOOLS_A)) == 0
    assert cli_verify(tmp_path, signed, node, body(TOOLS_B)) == 4  # other tools: the input does not match
    assert cli_verify(tmp_path, signed, node, body(None)) == 4  # the tools left out
    assert cli_verify(tmp_path, signed, node, {**body(TOOLS_A), "tool_choice": "auto"}) == 4
    assert cli_verify(tmp_path, signed, node, MESSAGES) == 0  # messages only: the tools are said to be unchecked
    assert cli_verify(tmp_path, signed, node, {**body(TOOLS_A), "tools": "nope"}) == 4  # not a body a node took
    # A version-1 receipt: as before, whatever tools the body names.
    assert cli_verify(tmp_path, old_receipt(node), node, body(TOOLS_B)) == 0
    assert cli_verify(tmp_path, receipt_for(node, body(None)), node, body(None)) == 0
