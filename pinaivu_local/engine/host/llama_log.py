"""Routes llama.cpp's own log lines into Python logging and keeps the last errors."""

from __future__ import annotations

import collections
import ctypes
import logging

import llama_cpp.llama_cpp as llama

log = logging.getLogger("pinaivu_local.llama_cpp")

# ggml_log_level: 1 debug, 2 info, 3 warn, 4 error, 5 continuation of the previous line.
# llama.cpp's info lines (every tensor, every buffer) are our debug.
_LEVELS = {1: logging.DEBUG, 2: logging.DEBUG, 3: logging.WARNING, 4: logging.ERROR}
_ERROR = 4


class LlamaLog:
    """Installs a llama.cpp log callback for the lifetime of this object (uninstall() undoes it)."""

    def __init__(self) -> None:
        self.recent_errors: collections.deque[str] = collections.deque(maxlen=8)
        self._last_level = logging.DEBUG
        # Kept on self: ctypes frees the trampoline when the Python object dies.
        self._callback = llama.llama_log_callback(self._on_log)
        llama.llama_log_set(self._callback, ctypes.c_void_p(0))

    def _on_log(self, level: int, text: bytes | None, _user: object) -> None:
        py_level = self._last_level if level == 5 else _LEVELS.get(level, logging.DEBUG)
        self._last_level = py_level
        line = (text or b"").decode("utf-8", "replace").rstrip()
        if not line:
            return
        if level == _ERROR:
            self.recent_errors.append(line)
        if log.isEnabledFor(py_level):
            log.log(py_level, "%s", line)

    def last_error(self) -> str | None:
        """The most recent error line llama.cpp printed, if any."""
        return self.recent_errors[-1] if self.recent_errors else None

    def uninstall(self) -> None:
        """Give logging back to llama.cpp's default (stderr) before this object goes away."""
        llama.llama_log_set(llama.llama_log_callback(), ctypes.c_void_p(0))  # NULL: the default
