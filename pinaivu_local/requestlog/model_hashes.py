"""SHA-256 of model files, computed off the request path and cached by path, size and mtime."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from pathlib import Path

log = logging.getLogger(__name__)

CHUNK = 1 << 20


class ModelHashes:
    """Hashes files in a background thread; `get` answers None until a hash is known, `require` waits."""

    def __init__(self, cache_file: Path) -> None:
        self._cache_file = cache_file
        self._lock = threading.Lock()
        self._known: dict[str, str] = self._load()
        self._busy: dict[str, threading.Lock] = {}  # files being hashed now
        self._resolved: dict[Path, str] = {}  # each file's real path

    def start(self, files: list[Path]) -> threading.Thread:
        """Hash every file not yet cached, in a daemon thread."""
        thread = threading.Thread(target=self._hash_all, args=(files,), name="model-hashes", daemon=True)
        thread.start()
        return thread

    def get(self, file: Path) -> str | None:
        """The file's SHA-256 if computed (and the file unchanged since)."""
        key = self._identity(file)
        with self._lock:
            return self._known.get(key) if key else None

    def require(self, file: Path) -> str:
        """The file's SHA-256, computed now if it is not known yet (blocks; call it off the event loop).

        Raises OSError when the file cannot be read. Two callers asking for one file hash it once.
        """
        key = self._identity(file)
        if key is None:
            raise FileNotFoundError(f"{file} is gone")
        with self._lock:
            busy = self._busy.setdefault(key, threading.Lock())
        with busy:
            known = self.get(file)
            if known:
                return known
            digest = hashlib.sha256()
            with file.open("rb") as f:
                while block := f.read(CHUNK):
                    digest.update(block)
            with self._lock:
                self._known[key] = digest.hexdigest()
                self._busy.pop(key, None)
                self._save()
            return digest.hexdigest()

    def _identity(self, file: Path) -> str | None:
        """The file's real path, size and modification time: a changed file gets a new hash."""
        try:
            stat = file.stat()
        except OSError:
            return None
        # Every request asks for its model's hash. Resolving a path costs a syscall per directory in it,
        # the stat one; so the real path is looked up once per file, and the stat still sees a change.
        real = self._resolved.get(file)
        if real is None:
            real = self._resolved[file] = str(file.resolve())
        return f"{real}|{stat.st_size}|{stat.st_mtime_ns}"

    def _hash_all(self, files: list[Path]) -> None:
        for file in files:
            try:
                self.require(file)
            except OSError as exc:
                log.warning("cannot hash %s: %s", file, exc.strerror or exc)

    def _load(self) -> dict[str, str]:
        try:
            data = json.loads(self._cache_file.read_text())
        except (OSError, ValueError):
            return {}
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def _save(self) -> None:
        try:
            self._cache_file.write_text(json.dumps(self._known, indent=1))
        except OSError as exc:
            log.debug("cannot cache model hashes in %s: %s", self._cache_file, exc.strerror)
