"""HTTP download of one file into a `.part` file, resumed with Range requests after an interruption."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from pinaivu_local.errors import PullError
from pinaivu_local.weights.checksum import CHUNK
from pinaivu_local.weights.gguf_info import GGUF_MAGIC
from pinaivu_local.weights.progress import TransferProgress

CONNECT_TIMEOUT_S = 15.0
# Between two bytes of a body: long enough for a slow mirror, short enough to notice a dead one.
READ_TIMEOUT_S = 60.0


class _Interrupted(Exception):
    """The transfer stopped part-way; another attempt may resume it."""


class Downloader:
    """Fetches URLs into `.part` files; retries with resume, checks the GGUF magic, hashes as it goes."""

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
        for attempt in range(self._retries + 1):
            try:
                return self._attempt(url, part, label, headers or {})
            except _Interrupted as exc:
                if attempt == self._retries:
                    raise PullError(
                        f"{label}: download interrupted ({exc}); run the same command again to resume"
                    ) from None
                self._sleep(self._backoff_s * 2**attempt)
        raise AssertionError("unreachable")

    def _attempt(self, url: str, part: Path, label: str, headers: dict[str, str]) -> str:
        offset = _resumable_size(part)
        if offset:
            headers = {**headers, "Range": f"bytes={offset}-"}
        try:
            with self._client.stream("GET", url, headers=headers) as response:
                if response.status_code == 416 and offset:  # the part does not fit the file (any more)
                    part.unlink()
                    raise _Interrupted("the server cannot resume this partial file; starting over")
                _check_status(response, label)
                if offset and not _resumes_at(response, offset):
                    offset = 0  # the server sent the whole file
                return self._receive(response, part, offset, label)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise PullError(f"{label}: cannot reach {_host(url)} ({_reason(exc)}); check the network") from None
        except httpx.TimeoutException as exc:
            raise _Interrupted(f"no data from {_host(url)} for {READ_TIMEOUT_S:.0f}s") from exc
        except httpx.TransportError as exc:
            raise _Interrupted(_reason(exc)) from exc

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


def _resumes_at(response: httpx.Response, offset: int) -> bool:
    """Whether a response is the 206 continuation of the bytes we have."""
    content_range = response.headers.get("content-range", "")
    return response.status_code == 206 and content_range.startswith(f"bytes {offset}-")


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
    part.unlink(missing_ok=True)
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
