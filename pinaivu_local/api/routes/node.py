"""GET /v1/node: who signs this server's receipts (no key needed); POST /v1/receipts/verify."""

from __future__ import annotations

from typing import Any

from litestar import Request, get, post
from litestar.di import NamedDependency

from pinaivu_local.api.http.openapi import error_responses, json_body
from pinaivu_local.api.http.validation import StrictBody, read_body
from pinaivu_local.errors import InvalidRequest
from pinaivu_local.receipts.document import FORMAT, MalformedReceipt, SignedReceipt
from pinaivu_local.receipts.identity import NodeIdentity
from pinaivu_local.receipts.verify import Outcome, TrustedKeys, check_signature

MAX_RECEIPT_BODY_BYTES = 64 * 1024


class ReceiptEnvelope(StrictBody):
    """A receipt as clients get it: the document and the signature."""

    receipt: dict[str, Any]
    signature: str


@get("/v1/node", summary="This node's id and the public keys its receipts are signed with")
async def node_identity(identity: NamedDependency[NodeIdentity]) -> dict[str, Any]:
    """Anyone may ask: the public half of the identity, retired keys included (old receipts name them)."""
    return {"object": "node", "receipt_format": FORMAT, **identity.public()}


@post(
    "/receipts/verify",
    status_code=200,
    summary="Check a receipt's signature against this node's keys",
    operation_class=json_body(ReceiptEnvelope),
    responses=error_responses(400, 401, 413, 422),
    # A receipt is a few KB; anything near this is not one, and parsing it would be free work.
    request_max_body_size=MAX_RECEIPT_BODY_BYTES,
)
async def verify_receipt(request: Request[Any, Any, Any], identity: NamedDependency[NodeIdentity]) -> dict[str, Any]:
    """For clients that cannot check Ed25519 themselves (the explorer in a browser without it).

    `pinaivu-local receipts verify` checks the same offline, trusting no server.
    """
    body = await read_body(request, ReceiptEnvelope)
    try:
        receipt = SignedReceipt.from_envelope(body.model_dump())
    except MalformedReceipt as exc:
        raise InvalidRequest(f"Not a receipt: {exc}.", param="receipt") from None
    finding = check_signature(receipt, TrustedKeys.from_node_document(identity.public()))
    return {
        "object": "receipt.verification",
        "valid": finding.outcome is Outcome.VALID,
        "outcome": finding.outcome.name.lower(),
        "message": finding.message,
        "node_id": identity.node_id,
    }
