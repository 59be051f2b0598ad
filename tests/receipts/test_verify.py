"""Receipts: canonical bytes, signatures that any change breaks, keys that must be trusted, commitments."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pinaivu_local.receipts.document import FIELDS, MalformedReceipt, SignedReceipt, canonical, sign
from pinaivu_local.receipts.identity import load_or_create, rotate
from pinaivu_local.receipts.verify import (
    MAX_NESTING,
    Outcome,
    TooDeep,
    TrustedKeys,
    check_input,
    check_output,
    check_signature,
    committed_input,
    read_json,
    read_receipt,
    response_text,
)
from pinaivu_local.requestlog.commitment import input_digest, output_digest
from pinaivu_local.requestlog.records import FinishedRequest

MESSAGES = [{"role": "user", "content": "Hello, ünïcode"}]
OUTPUT = "Hi there"


def record(**changes: object) -> FinishedRequest:
    """A completed chat request's record."""
    values: dict[str, object] = {
        "request_id": "req_0123456789abcdef0123456789abcdef",
        "created_at": datetime(2026, 11, 26, 3, 0, 0, tzinfo=UTC),
        "kind": "chat",
        "key_id": "key_x",
        "key_name": "test",
        "model_id": "llama3.2:1b",
        "model_sha256": "ab" * 32,
        "status_code": 200,
        "finish_reason": "stop",
        "prompt_tokens": 12,
        "completion_tokens": 3,
        "sampling": '{"temperature":0}',
        "input_sha256": input_digest(MESSAGES),
        "output_sha256": output_digest(OUTPUT),
    }
    values.update(changes)
    return FinishedRequest(**values)


def test_the_document_is_canonical_json_of_plain_values(tmp_path: Path) -> None:
    signed = sign(record(), load_or_create(tmp_path))
    assert set(signed.document) == set(FIELDS)
    text = canonical(signed.document).decode()
    assert text == json.dumps(signed.document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert " " not in text and all(isinstance(v, str | int | None) for v in signed.document.values())
    assert signed.document["created"] == int(datetime(2026, 11, 26, 3, 0, 0, tzinfo=UTC).timestamp())


def test_no_receipt_without_a_model_hash(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="known model hash"):
        sign(record(model_sha256=None), load_or_create(tmp_path))


def test_a_receipt_verifies_against_the_node_document(tmp_path: Path) -> None:
    node = load_or_create(tmp_path)
    signed = sign(record(), node)
    finding = check_signature(signed, TrustedKeys.from_node_document(node.public()))
    assert finding.outcome is Outcome.VALID and node.node_id in finding.message
    assert check_signature(signed, TrustedKeys.from_public_key(node.current.public_key)).outcome is Outcome.VALID


@pytest.mark.parametrize("field", sorted(FIELDS))
def test_changing_any_field_breaks_the_signature(tmp_path: Path, field: str) -> None:
    node = load_or_create(tmp_path)
    signed = sign(record(), node)
    value = signed.document[field]
    changed = value + 1 if isinstance(value, int) else "req_other" if value is None else value[:-1] + "!"
    forged = SignedReceipt({**signed.document, field: changed}, signed.signature)
    expected = Outcome.UNTRUSTED_KEY if field in ("key_id", "node_id") else Outcome.BAD_SIGNATURE
    assert check_signature(forged, TrustedKeys.from_node_document(node.public())).outcome is expected


def test_a_changed_signature_fails(tmp_path: Path) -> None:
    node = load_or_create(tmp_path)
    signed = sign(record(), node)
    raw = bytearray(base64.b64decode(signed.signature))
    raw[0] ^= 1
    forged = SignedReceipt(signed.document, base64.b64encode(bytes(raw)).decode())
    assert check_signature(forged, TrustedKeys.from_node_document(node.public())).outcome is Outcome.BAD_SIGNATURE
    garbage = SignedReceipt(signed.document, "not base64!")
    assert check_signature(garbage, TrustedKeys.from_node_document(node.public())).outcome is Outcome.BAD_SIGNATURE


def test_another_nodes_key_is_not_trusted(tmp_path: Path) -> None:
    ours, theirs = load_or_create(tmp_path / "a"), load_or_create(tmp_path / "b")
    signed = sign(record(), theirs)
    assert check_signature(signed, TrustedKeys.from_node_document(ours.public())).outcome is Outcome.UNTRUSTED_KEY
    # Their key id put into our receipt: still not our signature.
    relabelled = SignedReceipt(
        {**signed.document, "key_id": ours.current.key_id, "node_id": ours.node_id}, signed.signature
    )
    assert check_signature(relabelled, TrustedKeys.from_node_document(ours.public())).outcome is Outcome.BAD_SIGNATURE


def test_receipts_signed_before_a_rotation_still_verify(tmp_path: Path) -> None:
    before = sign(record(), load_or_create(tmp_path))
    node = rotate(tmp_path)
    after = sign(record(), node)
    trusted = TrustedKeys.from_node_document(node.public())
    assert check_signature(before, trusted).outcome is Outcome.VALID
    assert check_signature(after, trusted).outcome is Outcome.VALID
    assert before.document["key_id"] != after.document["key_id"]


def test_a_node_document_with_a_swapped_key_is_refused(tmp_path: Path) -> None:
    public = load_or_create(tmp_path / "a").public()
    public["current_key"]["public_key"] = load_or_create(tmp_path / "b").current.public_key
    with pytest.raises(MalformedReceipt, match="does not match its public key"):
        TrustedKeys.from_node_document(public)


def test_commitments_check_the_input_and_output_the_client_kept(tmp_path: Path) -> None:
    signed = sign(record(), load_or_create(tmp_path))
    body = {"model": "llama3.2:1b", "messages": [{**MESSAGES[0], "name": None}], "temperature": 0}
    assert check_input(signed, body).outcome is Outcome.VALID  # the whole body, null fields dropped
    assert check_input(signed, MESSAGES).outcome is Outcome.VALID
    assert check_input(signed, [{"role": "user", "content": "Hello, unicode"}]).outcome is Outcome.INPUT_MISMATCH
    assert check_output(signed, OUTPUT).outcome is Outcome.VALID
    assert check_output(signed, OUTPUT + " ").outcome is Outcome.OUTPUT_MISMATCH


def test_every_place_a_client_finds_a_receipt_reads_back(tmp_path: Path) -> None:
    signed = sign(record(), load_or_create(tmp_path))
    envelope = signed.envelope()
    for saved in (
        json.dumps(envelope),
        signed.header_value(),
        json.dumps({"request_id": "req_x", "receipt": envelope}),  # GET /v1/requests/{id}
        json.dumps({"choices": [], "pinaivu_receipt": envelope}),  # a stream's last chunk
    ):
        assert read_receipt(saved) == signed


@pytest.mark.parametrize(
    ("saved", "problem"),
    [
        ("nope", "not JSON"),
        ("[]", "exactly"),
        ('{"receipt": {}, "signature": "x"}', "missing"),
        ('{"receipt": {}, "signature": 1}', "base64 string"),
    ],
)
def test_malformed_receipts_are_named(saved: str, problem: str) -> None:
    with pytest.raises(MalformedReceipt, match=problem):
        read_receipt(saved)


def test_wrong_types_and_formats_are_malformed(tmp_path: Path) -> None:
    envelope = sign(record(), load_or_create(tmp_path)).envelope()
    for field, value in (("prompt_tokens", "12"), ("prompt_tokens", True), ("format", "pinaivu-receipt/9")):
        broken = {**envelope, "receipt": {**envelope["receipt"], field: value}}
        with pytest.raises(MalformedReceipt):
            SignedReceipt.from_envelope(broken)


def test_json_nested_past_the_bound_is_too_deep_at_any_depth() -> None:
    """Shallow enough is parsed; deeper is TooDeep, whether or not Python's own parser could follow it."""
    assert read_json("[" * MAX_NESTING + "]" * MAX_NESTING) is not None
    assert read_json('{"a": [1, {"b": null}]}') == {"a": [1, {"b": None}]}
    for depth in (MAX_NESTING + 1, 100_000):
        with pytest.raises(TooDeep):
            read_json("[" * depth + "]" * depth)
        with pytest.raises(MalformedReceipt, match="nested more than"):
            read_receipt('{"receipt":' * depth + "1" + "}" * depth)
    with pytest.raises(ValueError) as caught:
        read_json("{")
    assert not isinstance(caught.value, TooDeep)


def test_an_anthropic_message_is_checked_by_its_system_messages_and_text_blocks() -> None:
    body = {"model": "m", "max_tokens": 5, "system": "Be brief.", "messages": [{"role": "user", "content": "Hi"}]}
    assert committed_input(body, "messages") == {"system": "Be brief.", "messages": body["messages"]}
    assert committed_input({"messages": []}, "messages") == {"messages": []}  # no system: none committed
    message = {"type": "message", "content": [{"type": "text", "text": "Hel"}, {"type": "text", "text": "lo"}]}
    assert response_text(message) == "Hello"
    with pytest.raises(MalformedReceipt, match="tool_use"):
        response_text({"type": "message", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}]})


def test_a_responses_request_is_checked_by_its_instructions_input_and_output_text() -> None:
    body = {"model": "m", "instructions": "Be brief.", "input": "Hi", "previous_response_id": "resp_1", "store": True}
    assert committed_input(body, "responses") == {
        "instructions": "Be brief.",
        "input": "Hi",
        "previous_response_id": "resp_1",
    }
    assert committed_input({"input": [{"role": "user", "content": "Hi"}]}, "responses") == {
        "input": [{"role": "user", "content": "Hi"}]
    }
    part = {"type": "output_text", "text": "Hel", "annotations": []}
    response = {"object": "response", "output": [{"type": "message", "content": [part, {**part, "text": "lo"}]}]}
    assert response_text(response) == "Hello"
    with pytest.raises(MalformedReceipt, match="function_call"):
        response_text({"object": "response", "output": [{"type": "function_call", "name": "f", "arguments": "{}"}]})
