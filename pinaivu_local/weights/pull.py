"""`models pull`: put a catalog model's weights in the data dir, verified, from its source."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Literal

import httpx

from pinaivu_local import __version__
from pinaivu_local.catalog import ModelSpec
from pinaivu_local.errors import ChecksumMismatch, ConfigError, ModelFileError, OfflineRefused, PullError
from pinaivu_local.settings import Settings
from pinaivu_local.weights import ollama, partial
from pinaivu_local.weights.checksum import read_record, sha256_file, write_record
from pinaivu_local.weights.download import CONNECT_TIMEOUT_S, READ_TIMEOUT_S, Downloader
from pinaivu_local.weights.gguf_info import read_gguf_info
from pinaivu_local.weights.progress import TransferProgress
from pinaivu_local.weights.sources import HFSource, OllamaSource, Source, URLSource, parse_ollama_ref, parse_source

Action = Literal["downloaded", "linked", "copied", "present"]


@dataclass(frozen=True)
class PullResult:
    """What a pull did for one model."""

    id: str
    file: Path
    action: Action
    sha256: str
    size_bytes: int


class Puller:
    """Pulls catalog models with one HTTP client; use as a context manager (it closes the client)."""

    def __init__(
        self, settings: Settings, progress: TransferProgress, *, retries: int = 3, backoff_s: float = 1.0
    ) -> None:
        self._settings = settings
        self._progress = progress
        self._client = httpx.Client(
            follow_redirects=True,  # the Hub answers with a redirect to its CDN; httpx drops the token there
            timeout=httpx.Timeout(READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S),
            headers={"User-Agent": f"pinaivu-local/{__version__}"},
        )
        self._downloader = Downloader(self._client, progress, retries=retries, backoff_s=backoff_s)

    def __enter__(self) -> Puller:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._client.close()

    def pull(self, spec: ModelSpec, *, from_ollama: bool = False) -> PullResult:
        """Fetch `spec`'s file unless a good copy is there; PullError (one line) when it cannot."""
        target = spec.file
        if _is_complete_gguf(target):
            return self._present(spec)
        source = self._source(spec, from_ollama)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise PullError(f"{spec.id}: cannot create {target.parent} ({exc.strerror})") from None
        part = target.with_name(target.name + ".part")
        with _exclusive(target.parent, spec.id):
            if isinstance(source, OllamaSource):
                action, sha = self._import_ollama(spec, source, part)
            else:
                action, sha = "downloaded", self._download(spec, source, part)
            _verify(spec, part, sha)
            os.replace(part, target)
        write_record(target, sha)
        return PullResult(spec.id, target, action, sha, target.stat().st_size)

    def _source(self, spec: ModelSpec, from_ollama: bool) -> Source:
        try:
            if from_ollama:
                return (
                    parse_source(spec.source)
                    if spec.source and spec.source.startswith("ollama://")
                    else (parse_ollama_ref(spec.id))
                )
            if not spec.source:
                raise PullError(
                    f"{spec.id}: the catalog gives no source, only the path {spec.file}; put the file there"
                )
            return parse_source(spec.source)
        except ConfigError as exc:
            raise PullError(f"{spec.id}: {exc.message}") from None

    def _present(self, spec: ModelSpec) -> PullResult:
        """A file already in place: check it against the pinned hash, record its hash once."""
        sha = read_record(spec.file)
        if sha is None or (spec.sha256 and sha != spec.sha256):
            sha = self._hash(spec.file, f"{spec.id} (verifying)")
            with contextlib.suppress(OSError):  # a file in a read-only place is checked, just not recorded
                write_record(spec.file, sha)
        if spec.sha256 and sha != spec.sha256:
            raise ChecksumMismatch(
                f"{spec.id}: {spec.file} has SHA-256 {sha}, the catalog pins {spec.sha256}; "
                f"remove it with `pinaivu-local models rm {spec.id}` and pull again"
            )
        return PullResult(spec.id, spec.file, "present", sha, spec.file.stat().st_size)

    def _download(self, spec: ModelSpec, source: HFSource | URLSource, part: Path) -> str:
        headers: dict[str, str] = {}
        if isinstance(source, HFSource):
            if self._settings.hf_hub_offline:
                raise OfflineRefused(f"{spec.id}: HF_HUB_OFFLINE is set, so {spec.source} is not downloaded")
            url = source.url(self._settings.hf_endpoint)
            token = self._settings.hf_token.get_secret_value() if self._settings.hf_token else ""
            if token:  # only to the Hub: a plain https source never sees the token
                headers["Authorization"] = f"Bearer {token}"
        else:
            url = source.url
        return self._downloader.fetch(url, part, label=spec.id, headers=headers)

    def _import_ollama(self, spec: ModelSpec, source: OllamaSource, part: Path) -> tuple[Action, str]:
        stores = [self._settings.ollama_models] if self._settings.ollama_models else ollama.default_stores()
        blob, digest = ollama.find_blob(stores, source)
        partial.discard(part)  # a download left from another source is not this blob
        action: Action = "linked" if ollama.link_or_copy(blob, part) == "linked" else "copied"
        sha = self._hash(part, f"{spec.id} (verifying {source.ref()})")
        if sha != digest:
            part.unlink(missing_ok=True)
            raise ChecksumMismatch(
                f"{spec.id}: the Ollama blob {blob} has SHA-256 {sha}, not its name's {digest}; "
                f"the store is damaged, run `ollama pull {source.ref()}`"
            )
        return action, sha

    def _hash(self, path: Path, label: str) -> str:
        self._progress.begin(label, path.stat().st_size)
        try:
            return sha256_file(path, self._progress.advance)
        finally:
            self._progress.end()


def _verify(spec: ModelSpec, part: Path, sha: str) -> None:
    """Refuse (and delete) a fetched file that differs from the pinned hash or is no complete GGUF."""
    if spec.sha256 and sha != spec.sha256:
        part.unlink(missing_ok=True)
        raise ChecksumMismatch(
            f"{spec.id}: SHA-256 mismatch: got {sha}, the catalog pins {spec.sha256}; the download was deleted"
        )
    try:
        info = read_gguf_info(part)
    except ModelFileError as exc:
        part.unlink(missing_ok=True)
        raise PullError(f"{spec.id}: {exc.message}; nothing was kept") from None
    if info.truncated:
        part.unlink(missing_ok=True)
        raise PullError(
            f"{spec.id}: the file is truncated ({info.file_bytes} of {info.expected_bytes} bytes); nothing was kept"
        )


def _is_complete_gguf(path: Path) -> bool:
    try:
        return not read_gguf_info(path).truncated
    except ModelFileError:
        return False


@contextlib.contextmanager
def _exclusive(directory: Path, model_id: str) -> Iterator[None]:
    """One pull at a time per models directory, across processes (a `.part` file has one writer)."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; pulls there are not run side by side
        yield
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise PullError(f"{model_id}: another pull is writing to {directory}; wait for it to finish") from None
        yield
    finally:
        os.close(fd)
