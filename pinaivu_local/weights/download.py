"""HTTP download of one file into a `.part` file, resumed with Range and If-Range after an interruption."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from pinaivu_local.errors import PullError
from pinaivu_local.weights import partial
from pinaivu_local.weights.checksum import CHUNK
from pinaivu_local.weights.gguf_info import GGUF_MAGIC
from pinaivu_local.weights.progress import TransferProgress

CONNECT_TIMEOUT_S = 15.0
# Between two bytes of a body: long enough for a slow mirror, short enough to notice a dead one.
READ_TIMEOUT_S = 60.0


class _Interrupted(Exception):
    """The transfer stopped part-way; another attempt may resume it."""


class _StartOver(Exception):
    """The partial file was discarded (it is not the server's current version); fetch the whole file."""


@dataclass(frozen=True)
class _ResumePoint:
    """Where a resumed transfer starts, and the version the bytes before it belong to."""

    offset: int
    version: partial.Version


# huggingface_hub.hf_hub_download would share ~/.cache/huggingface and name partial files by ETag,
# but it is not used for hf:// sources (checked against huggingface_hub 2.4.0):
# - it writes to a process-unique `<etag>.<id>.incomplete` that it deletes when the call fails, so a
#   pull cut short (Ctrl-C, a network gone for longer than its retries) starts again from zero next
#   time, where this downloader resumes a multi-GB file;
# - the Hub keeps moving repositories to Xet storage, which it fetches with a native client (hf_xet)
#   that a loopback fake hub cannot stand in for: the path users take would go untested;
# - it does not hash as it writes nor look at the first bytes, so a pinned SHA-256 would cost a
#   second read of the whole file and an HTML page would be noticed only once complete;
# - the file would then have to be linked (or, across filesystems, copied) into the models folder.
class Downloader:
    """Fetches URLs into `.part` files; retries with resume, checks the GGUF magic, hashes as it goes.

    A part is resumed only when the server proves it still has the same version: the part's record
    (see `partial`) gives the validator sent as `If-Range`, and the answer must be a 206 of that
    version at the right offset. Anything else starts the file over, with one line saying why.
    """

    def __init__(
        self,
        client: httpx.Client,
        progress: TransferProgress,
        *,
        retries: int = 3,
        backoff_s: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._client = client
        self._progress = progress
        self._retries = retries
        self._backoff_s = backoff_s
        self._sleep = sleep

    def fetch(self, url: str, part: Path, *, label: str, headers: dict[str, str] | None = None) -> str:
        """Complete `part` from `url` and return its SHA-256; PullError in one line when it cannot."""
        # Offsets count bytes as sent: a compressed answer would not line up with the part on disk.
        headers = {**(headers or {}), "Accept-Encoding": "identity"}
        for attempt in range(self._retries + 1):
            try:
                return self._attempt(url, part, label, headers)
            except _Interrupted as exc:
                if attempt == self._retries:
                    raise PullError(
                        f"{label}: download interrupted ({exc}); run the same command again to resume"
                    ) from None
                self._sleep(self._backoff_s * 2**attempt)
        raise AssertionError("unreachable")

    def _attempt(self, url: str, part: Path, label: str, headers: dict[str, str]) -> str:
        try:
            return self._get(url, part, label, headers, self._resume_point(url, part, label))
        except _StartOver:
            return self._get(url, part, label, headers, None)

    def _resume_point(self, url: str, part: Path, label: str) -> _ResumePoint | None:
        """The part's size and version when it can be resumed; otherwise discard it (saying why if it had bytes)."""
        offset = _resumable_size(part)
        if not offset:
            partial.discard(part)  # nothing to resume; a record left alone is stale
            return None
        record = partial.load(part)
        if record is None or not record.version.known:
            problem = f"no record of which version of the file {part.name} holds"
        elif record.url != url:
            problem = f"{part.name} was fetched from another URL ({record.url})"
        elif record.version.size is not None and offset > record.version.size:
            problem = f"{part.name} is longer than the file it is part of"
        else:
            return _ResumePoint(offset, record.version)
        self._progress.note(f"{label}: {problem}; starting over")
        partial.discard(part)
        return None

    def _get(self, url: str, part: Path, label: str, headers: dict[str, str], resume: _ResumePoint | None) -> str:
        if resume is not None:
            headers = {**headers, "Range": f"bytes={resume.offset}-"}
            if resume.version.validator:  # else the Hub's X-Linked-Etag on the redirect is checked (see partial)
                headers["If-Range"] = resume.version.validator
        try:
            with self._client.stream("GET", url, headers=headers) as response:
                offset = self._resumed_offset(response, part, label, resume) if resume is not None else 0
                _check_status(response, label)
                if not offset:  # the whole file follows: record its version before the first byte is on disk
                    self._start(url, part, label, response)
                return self._receive(response, part, offset, label)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise PullError(f"{label}: cannot reach {_host(url)} ({_reason(exc)}); check the network") from None
        except httpx.TimeoutException as exc:
            raise _Interrupted(f"no data from {_host(url)} for {READ_TIMEOUT_S:.0f}s") from exc
        except httpx.TransportError as exc:
            raise _Interrupted(_reason(exc)) from exc

    def _resumed_offset(self, response: httpx.Response, part: Path, label: str, resume: _ResumePoint) -> int:
        """`resume.offset` when the answer continues the same version; 0 when it is the whole file anew.

        Raises _StartOver (the part discarded) when it is neither, e.g. a 206 of another version from
        a server that ignores If-Range.
        """
        status, host = response.status_code, _host(str(response.url))
        if status not in (200, 206, 416):
            return resume.offset  # an error: _check_status says which, and the part is kept
        version = partial.Version.of(response)
        if status == 416:
            problem = f"{host} cannot resume {part.name} (HTTP 416)"
        elif not version.known:
            problem = f"{host} no longer says which version of the file it sends (no ETag or Last-Modified)"
        elif not version.same_as(resume.version):
            problem = f"the file changed on {host} since {part.name} was fetched"
        elif status == 200:
            problem = f"{host} sent the whole file, not the rest of {part.name}"
        elif not _continues(response, resume.offset):
            problem = f"{host} sent another range than the rest of {part.name}"
        else:
            return resume.offset
        self._progress.note(f"{label}: {problem}; starting over")
        if status != 200:
            partial.discard(part)
            raise _StartOver
        return 0  # a 200 is the whole current file: take it

    def _start(self, url: str, part: Path, label: str, response: httpx.Response) -> None:
        """Record the version the whole file about to be written belongs to (none known: no record, no resume)."""
        version = partial.Version.of(response)
        try:
            if version.known:
                part.parent.mkdir(parents=True, exist_ok=True)
                partial.save(part, partial.PartRecord(url, version))
            else:
                partial.forget(part)
        except OSError as exc:
            raise PullError(f"{label}: cannot write {partial.record_path(part)} ({exc.strerror})") from None

    def _receive(self, response: httpx.Response, part: Path, offset: int, label: str) -> str:
        length = response.headers.get("content-length")
        total = offset + int(length) if length and length.isdigit() else None
        digest = _hash_prefix(part, offset)
        head = _read_head(part) if offset else b""
        received = offset
        self._progress.begin(label, total, offset)
        try:
            with part.open("r+b" if offset else "wb") as out:
                out.seek(offset)
                out.truncate()
                for chunk in response.iter_bytes():  # as received: a cut connection loses nothing buffered
                    if len(head) < len(GGUF_MAGIC):
                        head += chunk[: len(GGUF_MAGIC) - len(head)]
                        _check_magic(head, part, label, final=False)
                    out.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    self._progress.advance(len(chunk))
                out.flush()
                os.fsync(out.fileno())
        except OSError as exc:
            raise PullError(f"{label}: cannot write {part} ({exc.strerror})") from None
        finally:
            self._progress.end()
        if total is not None and received < total:
            raise _Interrupted(f"the connection closed after {received} of {total} bytes")
        _check_magic(head, part, label, final=True)
        partial.forget(part)  # complete: nothing left to resume
        return digest.hexdigest()


def _resumable_size(part: Path) -> int:
    """Bytes already fetched; a part that is a hard link (an Ollama blob) is never written into."""
    try:
        stat = part.stat()
    except FileNotFoundError:
        return 0
    if stat.st_nlink > 1:
        part.unlink()
        return 0
    return stat.st_size


def _continues(response: httpx.Response, offset: int) -> bool:
    """Whether a 206 starts at `offset` (the bytes we have end there)."""
    return response.headers.get("content-range", "").startswith(f"bytes {offset}-")


def _check_status(response: httpx.Response, label: str) -> None:
    status = response.status_code
    if status in (200, 206):
        return
    url = str(response.request.url)
    if status in (401, 403):
        raise PullError(
            f"{label}: access denied by {_host(url)} (HTTP {status}); if the repository is gated, accept its "
            "terms on the website and set HF_TOKEN"
        )
    if status == 404:
        raise PullError(f"{label}: not found (HTTP 404): {url}")
    if status >= 500 or status == 429:
        raise _Interrupted(f"HTTP {status} from {_host(url)}")
    raise PullError(f"{label}: HTTP {status} from {url}")


def _check_magic(head: bytes, part: Path, label: str, *, final: bool) -> None:
    """Refuse (and delete) what is not a GGUF, e.g. an HTML login page."""
    if head == GGUF_MAGIC[: len(head)] and (len(head) == len(GGUF_MAGIC) or not final):
        return
    partial.discard(part)
    raise PullError(f"{label}: the server did not send a GGUF file (it starts with {head!r}); nothing was kept")


def _hash_prefix(part: Path, offset: int) -> hashlib._Hash:
    digest = hashlib.sha256()
    if offset:
        with part.open("rb") as f:
            remaining = offset
            while remaining and (chunk := f.read(min(CHUNK, remaining))):
                digest.update(chunk)
                remaining -= len(chunk)
    return digest


def _read_head(part: Path) -> bytes:
    with part.open("rb") as f:
        return f.read(len(GGUF_MAGIC))


def _host(url: str) -> str:
    return urlsplit(url).netloc or url


def _reason(exc: Exception) -> str:
    """httpx's message, down to its first line (DNS and socket errors are long)."""
    text = str(exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__
