"""`pinaivu-local receipts verify`: prove offline which node and model file produced an answer."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from pinaivu_local.errors import PinaivuError
from pinaivu_local.receipts.document import MalformedReceipt, SignedReceipt
from pinaivu_local.receipts.verify import (
    Finding,
    Outcome,
    TooDeep,
    TrustedKeys,
    check_input,
    check_output,
    check_signature,
    check_structure,
    read_json,
    read_receipt,
    response_text,
)

EXIT_CODES = """Exit codes: 0 valid; 1 the signature does not match (the receipt was altered); 2 usage;
3 signed by a key not trusted (another node, or a key not listed); 4 the input does not match;
5 the output does not match; 6 the receipt file is not a receipt; 7 the keys could not be had."""


# What each API's verification model is given of a whole request body to hash its structure fields.
_CHAT_FIELDS = ("tools", "tool_choice", "parallel_tool_calls", "response_format")
_MESSAGES_FIELDS = ("system", "messages", "tools", "tool_choice", "output_config")
_RESPONSES_FIELDS = ("input", "instructions", "previous_response_id", *_CHAT_FIELDS[:3], "text")


class _Failed(Exception):
    """A check failed before the end: carries the finding to report."""

    def __init__(self, finding: Finding) -> None:
        super().__init__(finding.message)
        self.finding = finding


@click.group()
def receipts() -> None:
    """Check the signed receipts answers carry, offline, trusting no server."""


@receipts.command("verify", epilog=EXIT_CODES)
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False, allow_dash=True))
@click.option("--public-key", help="The node's base64 public key, or a file holding its saved /v1/node answer.")
@click.option("--node", "node_url", help="Fetch the node's keys from its /v1/node (e.g. http://127.0.0.1:8080).")
@click.option(
    "--input",
    "input_file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="JSON: the request body you sent (its tools, tool_choice and response format are checked too), "
    "or its messages, or its prompt.",
)
@click.option(
    "--output",
    "output_file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="The output text exactly as received (UTF-8).",
)
@click.option(
    "--response",
    "response_file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="A saved JSON response body: its first choice's text (a Responses object: its output_text) is the output.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
def verify(
    file: Path,
    public_key: str | None,
    node_url: str | None,
    input_file: Path | None,
    output_file: Path | None,
    response_file: Path | None,
    as_json: bool,
) -> None:
    """Check FILE's signature (a receipt, a record, a stream's last chunk or the x-pinaivu-receipt header's
    value; - reads stdin), then the input and output you kept against its commitments."""
    if (public_key is None) == (node_url is None):
        raise click.UsageError("say which keys you trust: give --public-key or --node (one of them)")
    if output_file and response_file:
        raise click.UsageError("give --output or --response, not both")
    findings: list[Finding] = []
    receipt: SignedReceipt | None = None
    try:
        receipt = _load_receipt(file)
        trusted = _trusted_keys(public_key, node_url)
        findings.append(_required(check_signature(receipt, trusted)))
        if input_file is not None:
            held = _input(input_file)
            findings.append(_required(check_input(receipt, held)))
            findings.append(_required(_structure(receipt, held)))
        output = _kept_output(output_file, response_file)
        if output is not None:
            findings.append(_required(check_output(receipt, output)))
    except _Failed as failed:
        findings.append(failed.finding)
    _report(findings, as_json, receipt_document=receipt.document if receipt else None)
    sys.exit(findings[-1].outcome.value)


def _required(finding: Finding) -> Finding:
    if finding.outcome is not Outcome.VALID:
        raise _Failed(finding)
    return finding


def _load_receipt(file: Path) -> SignedReceipt:
    try:
        text = sys.stdin.read() if str(file) == "-" else file.read_text(encoding="utf-8")
        return read_receipt(text)
    except (OSError, UnicodeDecodeError) as exc:
        raise _Failed(Finding(Outcome.MALFORMED, f"{file}: cannot be read ({exc})")) from None
    except MalformedReceipt as exc:
        raise _Failed(Finding(Outcome.MALFORMED, f"{file} is not a receipt: {exc}")) from None


def _trusted_keys(public_key: str | None, node_url: str | None) -> TrustedKeys:
    try:
        if node_url is not None:
            return TrustedKeys.from_node_document(_fetch_node(node_url))
        assert public_key is not None
        path = Path(public_key)
        if _is_file(path):
            return TrustedKeys.from_node_document(read_json(path.read_text(encoding="utf-8")))
        return TrustedKeys.from_public_key(public_key)
    except (OSError, UnicodeDecodeError, ValueError) as exc:  # MalformedReceipt is a ValueError
        raise _Failed(Finding(Outcome.NO_KEYS, f"the trusted keys are unusable: {exc}")) from None


def _is_file(path: Path) -> bool:
    """Whether --public-key names a file; a key itself may be no possible file name (too long)."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def _fetch_node(url: str) -> Any:
    import httpx

    address = url.rstrip("/").removesuffix("/v1") + "/v1/node"
    try:
        response = httpx.get(address, timeout=10.0)
        response.raise_for_status()
        return read_json(response.content)
    except (httpx.HTTPError, httpx.InvalidURL, ValueError) as exc:  # InvalidURL: --node is not a URL
        raise _Failed(Finding(Outcome.NO_KEYS, f"cannot get the node's keys from {address}: {exc}")) from None


def _input(path: Path) -> Any:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise click.UsageError(f"--input {path}: cannot be read ({exc.strerror})") from None
    try:
        return read_json(data.decode("utf-8"))
    except TooDeep as exc:  # valid JSON, perhaps, but not what a node accepts: it cannot be checked
        raise click.UsageError(f"--input {path}: {exc}") from None
    except ValueError as exc:  # UnicodeDecodeError included: not what was sent, whatever was
        raise _Failed(Finding(Outcome.INPUT_MISMATCH, f"--input {path} is not UTF-8 JSON ({exc})")) from None


def _structure(receipt: SignedReceipt, held: Any) -> Finding:
    """Check the structure fields of a whole request body; say so where only messages or a prompt were kept."""
    kind = receipt.document["kind"]
    whole = isinstance(held, dict) and (kind in ("messages", "responses") or "messages" in held or "prompt" in held)
    if not whole or kind in ("embedding", "rerank"):
        if receipt.document.get("structure_sha256") is None:
            return Finding(Outcome.VALID, "the request had no tools or response format")
        return Finding(
            Outcome.VALID, "the tools and response format were not checked: give the whole request body as --input"
        )
    try:
        digest = structure_digest_of(held, kind)
    except (ValueError, PinaivuError) as exc:  # pydantic's ValidationError is a ValueError: not what was sent
        return Finding(Outcome.INPUT_MISMATCH, f"--input's tools or response format are not valid: {exc}")
    return check_structure(receipt, digest)


def structure_digest_of(body: dict[str, Any], kind: str) -> str | None:
    """SHA-256 of a request body's structure fields as the node computed it: parsed by its API's models,
    so defaults and dropped nulls hash the same (api/routes/requests.py's verification does the same)."""
    # Imported here, as the models below: they reach the engine, which loads llama.cpp, and a command
    # must load llama.cpp only through cli/common.py's load_llama_cpp (a bad LLAMA_CPP_LIB_PATH is one line).
    from pinaivu_local.api.flow.tool_structure import structure_digest

    if kind == "messages":
        from pinaivu_local.api.anthropic.protocol import MessagesVerifyRequest

        asked = MessagesVerifyRequest.model_validate({**_picked(body, _MESSAGES_FIELDS), "output": ""})
        return structure_digest(asked.as_request().structure_fields())
    if kind == "responses":
        from pinaivu_local.api.responses.building import structure_fields
        from pinaivu_local.api.responses.protocol import ResponsesVerifyRequest

        response = ResponsesVerifyRequest.model_validate({**_picked(body, _RESPONSES_FIELDS), "output": ""})
        return structure_digest(structure_fields(response.as_request()))
    if kind == "chat":
        from pinaivu_local.api.routes.requests import VerifyRequest

        chat = VerifyRequest.model_validate({**_picked(body, _CHAT_FIELDS), "output": ""})
        return structure_digest(chat.model_dump(include=set(_CHAT_FIELDS), exclude_none=True, by_alias=True))
    return None  # a text completion has no structure fields


def _picked(body: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    return {name: body[name] for name in fields if name in body}


def _kept_output(output_file: Path | None, response_file: Path | None) -> str | None:
    if output_file is not None:
        try:
            data = output_file.read_bytes()
        except OSError as exc:
            raise click.UsageError(f"--output {output_file}: cannot be read ({exc.strerror})") from None
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise _Failed(Finding(Outcome.OUTPUT_MISMATCH, f"--output {output_file} is not UTF-8 text")) from None
    if response_file is not None:
        try:
            return response_text(read_json(response_file.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise click.UsageError(f"--response {response_file}: {exc}") from None
    return None


def _report(findings: list[Finding], as_json: bool, *, receipt_document: dict[str, Any] | None) -> None:
    last = findings[-1]
    if as_json:
        click.echo(
            json.dumps(
                {
                    "valid": last.outcome is Outcome.VALID,
                    "outcome": last.outcome.name.lower(),
                    "checks": [{"outcome": f.outcome.name.lower(), "message": f.message} for f in findings],
                    "receipt": receipt_document,
                },
                indent=2,
            )
        )
        return
    for finding in findings:
        mark = "ok  " if finding.outcome is Outcome.VALID else "FAIL"
        click.echo(f"{mark} {finding.message}", err=finding.outcome is not Outcome.VALID)
    if last.outcome is Outcome.VALID and receipt_document is not None:
        d = receipt_document
        click.echo(
            f"{d['request_id']}: {d['model']} (model file sha256 {d['model_sha256']}) on node {d['node_id']}, "
            f"{d['prompt_tokens']} tokens in, {d['completion_tokens']} out, finish {d['finish_reason']}"
        )
