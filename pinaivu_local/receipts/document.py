"""The receipt: a canonical JSON document of what a node computed, and the node's signature over it.

The document holds only strings, integers and null, so its canonical form (sorted keys, no spaces,
UTF-8) is the same in every language: `JSON.stringify` of a key-sorted object gives the same bytes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from pinaivu_local.clock import as_utc
from pinaivu_local.receipts.identity import ALGORITHM, NodeIdentity
from pinaivu_local.requestlog.records import FinishedRequest

FORMAT = "pinaivu-receipt/2"  # what this node signs
FORMAT_V1 = "pinaivu-receipt/1"  # what it signed before: still read and verified

# Every field of a version-1 document, and the JSON types each may hold.
FIELDS_V1: dict[str, tuple[type, ...]] = {
    "format": (str,),
    "algorithm": (str,),
    "request_id": (str,),
    "node_id": (str,),
    "key_id": (str,),
    "kind": (str,),
    "model": (str,),
    "model_sha256": (str,),
    "input_sha256": (str,),
    "output_sha256": (str,),
    "prompt_tokens": (int,),
    "completion_tokens": (int,),
    "sampling_sha256": (str,),
    "finish_reason": (str,),
    "created": (int,),
    "replay_of": (str, type(None)),
}
# Version 2 adds the request's structure fields (tools, tool_choice, parallel_tool_calls, response_format;
# an Anthropic request's output_config, a Responses request's text), which shape the answer as much as
# its messages do: SHA-256 of their canonical JSON as sent, null where the request had none.
FIELDS: dict[str, tuple[type, ...]] = {**FIELDS_V1, "structure_sha256": (str, type(None))}
FIELDS_OF = {FORMAT: FIELDS, FORMAT_V1: FIELDS_V1}


class MalformedReceipt(ValueError):
    """A receipt that is not a version-1 or version-2 receipt: missing fields, wrong types, not JSON."""


def canonical(document: dict[str, Any]) -> bytes:
    """The bytes that are signed: sorted keys, no spaces, UTF-8 kept."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True)
class SignedReceipt:
    """A receipt document and the base64 Ed25519 signature over its canonical bytes."""

    document: dict[str, Any]
    signature: str

    def envelope(self) -> dict[str, Any]:
        """The form clients get everywhere: {"receipt": {...}, "signature": "..."}."""
        return {"receipt": self.document, "signature": self.signature}

    def header_value(self) -> str:
        """The envelope for the x-pinaivu-receipt header: compact JSON, ASCII only."""
        return json.dumps(self.envelope(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_envelope(cls, value: Any) -> SignedReceipt:
        """Check an envelope's shape (not its signature); MalformedReceipt names what is wrong."""
        if not isinstance(value, dict) or set(value) != {"receipt", "signature"}:
            raise MalformedReceipt('expected an object with exactly "receipt" and "signature"')
        document, signature = value["receipt"], value["signature"]
        if not isinstance(signature, str):
            raise MalformedReceipt('"signature" must be a base64 string')
        if not isinstance(document, dict):
            raise MalformedReceipt('"receipt" must be an object')
        named = document.get("format")
        fields = FIELDS_OF.get(named, FIELDS) if isinstance(named, str) else FIELDS
        if set(document) != set(fields):
            missing, extra = sorted(set(fields) - set(document)), sorted(set(document) - set(fields))
            raise MalformedReceipt(f"receipt fields: missing {missing or 'none'}, unknown {extra or 'none'}")
        for name, types in fields.items():
            # bool is an int in Python; JSON's true is not a number
            if not isinstance(document[name], types) or isinstance(document[name], bool):
                raise MalformedReceipt(f"receipt field {name!r} has the wrong type")
        if document["format"] not in FIELDS_OF:
            raise MalformedReceipt(
                f"unknown receipt format {document['format']!r} (this program reads {FORMAT} and {FORMAT_V1})"
            )
        return cls(document, signature)

    @property
    def commits_to_structure(self) -> bool:
        """Whether it names the request's structure fields (version 2); a version-1 receipt does not."""
        return "structure_sha256" in self.document


def document_of(record: FinishedRequest, identity: NodeIdentity) -> dict[str, Any]:
    """The receipt document of a completed request's record (its model hash must be known)."""
    created = as_utc(record.created_at)
    if record.model_sha256 is None or record.output_sha256 is None or record.finish_reason is None:
        raise ValueError("only a completed request with a known model hash gets a receipt")
    assert created is not None
    return {
        "format": FORMAT,
        "algorithm": ALGORITHM,
        "request_id": record.request_id,
        "node_id": identity.node_id,
        "key_id": identity.current.key_id,
        "kind": record.kind,
        "model": record.model_id,
        "model_sha256": record.model_sha256,
        "input_sha256": record.input_sha256,
        "output_sha256": record.output_sha256,
        "prompt_tokens": record.prompt_tokens,
        "completion_tokens": record.completion_tokens,
        "sampling_sha256": hashlib.sha256(record.sampling.encode()).hexdigest(),
        "finish_reason": record.finish_reason,
        "created": int(created.timestamp()),
        "replay_of": record.replay_of,
        "structure_sha256": _structure_digest(record),
    }


def _structure_digest(record: FinishedRequest) -> str | None:
    """The digest of the request's structure fields, which its sampling JSON keeps (api/flow/trace.py)."""
    try:
        digest = json.loads(record.sampling).get("structure_sha256")
    except (ValueError, AttributeError):  # not a JSON object: no structure fields were kept
        return None
    return digest if isinstance(digest, str) else None


def sign(record: FinishedRequest, identity: NodeIdentity) -> SignedReceipt:
    """The record's receipt, signed with the node's current key."""
    document = document_of(record, identity)
    return SignedReceipt(document, identity.sign(canonical(document)))
