"""Checking a receipt offline: its signature against keys the verifier trusts, then the commitments.

Nothing here trusts the server that issued the receipt: the keys come from the verifier (a public
key it kept, a saved `/v1/node` document, or a node it asks), the input and output from the client.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from cryptography.exceptions import InvalidSignature

from pinaivu_local.receipts.document import MalformedReceipt, SignedReceipt, canonical
from pinaivu_local.receipts.identity import PublicKey, key_id_of, raw_public_key
from pinaivu_local.requestlog.commitment import input_digest, output_digest

# JSON a verifier reads nests a few levels (a chat's messages about five). Deeper is refused before
# anything walks it: Python's parser and hashing recurse, and past its limit they raise RecursionError.
MAX_NESTING = 256


class TooDeep(ValueError):
    """JSON nested deeper than MAX_NESTING: no receipt, node document, request or response is."""


def read_json(text: str | bytes) -> Any:
    """JSON a verifier was given; ValueError when it is not JSON, TooDeep when it nests too deeply."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise TooDeep(f"JSON nested more than {MAX_NESTING} levels") from None
    # Iterative, so it measures any depth the parser managed; hashing the value then recurses safely.
    level = [value]  # after the loop's n-th turn: what lies n levels in
    for _ in range(MAX_NESTING):
        level = [c for v in level for c in (v.values() if isinstance(v, dict) else v if isinstance(v, list) else ())]
        if not level:
            return value
    raise TooDeep(f"JSON nested more than {MAX_NESTING} levels")


class Outcome(IntEnum):
    """What a check found; the value is `receipts verify`'s exit code (2 is click's usage error)."""

    VALID = 0
    BAD_SIGNATURE = 1
    UNTRUSTED_KEY = 3
    INPUT_MISMATCH = 4
    OUTPUT_MISMATCH = 5
    MALFORMED = 6
    NO_KEYS = 7  # the trusted keys could not be had: a node unreachable, a key file unreadable


@dataclass(frozen=True)
class TrustedKeys:
    """The keys a verifier accepts, by key id, and the node they belong to when known."""

    keys: dict[str, PublicKey]
    node_id: str | None = None

    @classmethod
    def from_node_document(cls, value: Any) -> TrustedKeys:
        """From a `/v1/node` answer (current and retired keys); MalformedReceipt if it is not one."""
        try:
            listed = [value["current_key"], *value["retired_keys"]]
            keys = [PublicKey(str(k["key_id"]), str(k["public_key"]), str(k["created_at"])) for k in listed]
            node_id = str(value["node_id"])
        except (KeyError, TypeError) as exc:
            raise MalformedReceipt(f"not a /v1/node document (missing {exc})") from None
        for key in keys:  # a listed key must be the key its id names
            if key_id_of(_raw_key(key.public_key)) != key.key_id:
                raise MalformedReceipt(f"key {key.key_id} in the node document does not match its public key")
        return cls({k.key_id: k for k in keys}, node_id)

    @classmethod
    def from_public_key(cls, value: str) -> TrustedKeys:
        """From one base64 raw Ed25519 public key."""
        raw = _raw_key(value)
        key_id = key_id_of(raw)
        return cls({key_id: PublicKey(key_id, base64.b64encode(raw).decode("ascii"), "")})


@dataclass(frozen=True)
class Finding:
    """The outcome of a check and one line that explains it."""

    outcome: Outcome
    message: str


def read_receipt(text: str) -> SignedReceipt:
    """A receipt from what a client saved: the envelope itself, the x-pinaivu-receipt header's value,
    a record from GET /v1/requests/{id}, or the last chunk of a stream."""
    try:
        value = read_json(text)
    except TooDeep as exc:
        raise MalformedReceipt(str(exc)) from None
    except ValueError:
        raise MalformedReceipt("not JSON") from None
    if isinstance(value, dict) and isinstance(value.get("pinaivu_receipt"), dict):
        value = value["pinaivu_receipt"]  # a stream's last chunk
    elif isinstance(value, dict) and isinstance(value.get("receipt"), dict) and "signature" not in value:
        value = value["receipt"]  # a request record
    return SignedReceipt.from_envelope(value)


def check_signature(receipt: SignedReceipt, trusted: TrustedKeys) -> Finding:
    """Is the receipt signed by a trusted key of the node it names?"""
    document = receipt.document
    key = trusted.keys.get(document["key_id"])
    if key is None:
        return Finding(Outcome.UNTRUSTED_KEY, f"key {document['key_id']} is not among the trusted keys")
    if trusted.node_id is not None and trusted.node_id != document["node_id"]:
        return Finding(
            Outcome.UNTRUSTED_KEY, f"the receipt names node {document['node_id']}, the keys are {trusted.node_id}'s"
        )
    try:
        signature = base64.b64decode(receipt.signature, validate=True)
        if base64.b64encode(signature).decode("ascii") != receipt.signature:
            raise ValueError("not canonical base64")  # spare bits set: another spelling of the same bytes
        key.verifier().verify(signature, canonical(document))
    except (InvalidSignature, binascii.Error, ValueError):
        return Finding(Outcome.BAD_SIGNATURE, "the signature does not match the receipt: it was altered")
    return Finding(Outcome.VALID, f"signed by node {document['node_id']} with key {key.key_id}")


def check_input(receipt: SignedReceipt, value: Any) -> Finding:
    """Does the input a client kept (a request body, its messages or its prompt) match the commitment?"""
    committed = committed_input(value, receipt.document["kind"])
    if input_digest(committed) != receipt.document["input_sha256"]:
        return Finding(Outcome.INPUT_MISMATCH, "the input does not match the receipt's input_sha256")
    return Finding(Outcome.VALID, "the input matches")


def check_structure(receipt: SignedReceipt, digest: str | None) -> Finding:
    """Do the structure fields a client kept (tools, tool_choice, ...: `digest` is their SHA-256 as the
    node computes it, None for none) match the commitment? A version-1 receipt names none to check."""
    if not receipt.commits_to_structure:
        return Finding(Outcome.VALID, "the tools and response format were not checked: a version-1 receipt names none")
    if digest != receipt.document["structure_sha256"]:
        return Finding(
            Outcome.INPUT_MISMATCH,
            "the request's tools, tool_choice or response format do not match the receipt's structure_sha256",
        )
    return Finding(Outcome.VALID, "the tools and response format match" if digest else "the request had no tools")


def check_output(receipt: SignedReceipt, text: str) -> Finding:
    """Does the output text a client kept match the commitment?"""
    if output_digest(text) != receipt.document["output_sha256"]:
        return Finding(Outcome.OUTPUT_MISMATCH, "the output does not match the receipt's output_sha256")
    return Finding(Outcome.VALID, "the output matches")


def committed_input(value: Any, kind: str) -> Any:
    """What the input commitment hashes: a chat's messages with null fields dropped, the prompt, an
    Anthropic Messages request's `system` and `messages`, or an OpenAI Responses request's
    `instructions`, `input` and `previous_response_id`, exactly as sent."""
    if kind == "messages":
        return {k: value[k] for k in ("system", "messages") if k in value} if isinstance(value, dict) else value
    if kind == "responses":
        fields = ("instructions", "input", "previous_response_id")
        return {k: value[k] for k in fields if k in value} if isinstance(value, dict) else value
    if isinstance(value, dict):  # a whole request body
        value = value.get("messages" if kind == "chat" else "prompt")
    if kind == "chat" and isinstance(value, list):
        return [{k: v for k, v in m.items() if v is not None} if isinstance(m, dict) else m for m in value]
    return value


def response_text(body: Any) -> str:
    """The output of a saved non-streamed response body: its first choice's content or text, an
    Anthropic message's text blocks, or a Responses object's output_text (one that calls a tool: keep
    the model's text, as for chat)."""
    if isinstance(body, dict) and body.get("object") == "response" and isinstance(body.get("output"), list):
        return _output_text(body["output"])
    if isinstance(body, dict) and body.get("type") == "message" and isinstance(body.get("content"), list):
        blocks = body["content"]
        if any(not isinstance(b, dict) or b.get("type") != "text" for b in blocks):
            raise MalformedReceipt("the message holds a tool_use block: verify it with the output the model wrote")
        return "".join(str(b.get("text", "")) for b in blocks)
    try:
        choice = body["choices"][0]
        text = choice["message"]["content"] if "message" in choice else choice["text"]
    except (KeyError, IndexError, TypeError):
        raise MalformedReceipt("not a completion response (no choices[0].message.content or .text)") from None
    if not isinstance(text, str):
        raise MalformedReceipt("the response's first choice has no text")
    return text


def _raw_key(value: str) -> bytes:
    try:
        return raw_public_key(value)
    except ValueError as exc:
        raise MalformedReceipt(str(exc)) from None


def _output_text(items: list[Any]) -> str:
    """A Responses object's text: its message items' output_text parts, joined."""
    if any(not isinstance(item, dict) or item.get("type") != "message" for item in items):
        raise MalformedReceipt("the response holds a function_call item: verify it with the output the model wrote")
    return "".join(
        str(part.get("text", ""))
        for item in items
        for part in item.get("content") or []
        if isinstance(part, dict) and part.get("type") == "output_text"
    )
