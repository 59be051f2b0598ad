"""Which llama.cpp this process runs: its build, the library file that was loaded, its backends."""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass
from pathlib import Path

import llama_cpp
import llama_cpp.llama_cpp as llama

from pinaivu_local.children import is_frozen
from pinaivu_local.engine.host.devices import backends, supports_gpu_offload

# ggml backends that register next to a GPU backend without being one.
_NOT_GPU = {"CPU", "BLAS", "RPC"}


@dataclass(frozen=True)
class LlamaBuild:
    """llama.cpp as loaded in this process."""

    llama_cpp_python: str
    commit: str | None  # llama.cpp's commit, as ggml was built with it
    ggml_version: str | None
    library: str  # the libllama file loaded
    ggml_library: str | None  # the libggml that libllama got (its backend registry); None where unknown
    library_source: str  # "LLAMA_CPP_LIB_PATH", "bundled" (the one-file binary) or "llama-cpp-python"
    backends: tuple[str, ...]  # the ggml backends registered: CPU, CUDA, Metal, ...
    gpu_offload: bool

    @property
    def backend(self) -> str:
        """cpu, cuda, metal, vulkan, ...: the build's GPU backend where it has one."""
        gpu = [name for name in self.backends if name not in _NOT_GPU]
        if gpu:
            return gpu[0].lower()
        return "gpu" if self.gpu_offload else "cpu"

    def describe(self) -> list[str]:
        """For people: the build and its backend, then the library files loaded."""
        backends = ", ".join(self.backends) or "none"
        return [
            f"llama.cpp {self.commit or '(commit unknown)'} (ggml {self.ggml_version or '?'}, "
            f"llama-cpp-python {self.llama_cpp_python}), backend {self.backend} (ggml backends: {backends})",
            f"libllama {self.library} ({self.library_source})",
            f"libggml  {self.ggml_library or 'unknown'}",
        ]


def llama_build() -> LlamaBuild:
    """Ask the loaded library; importing llama_cpp (done above) is what loads it."""
    library = str(llama._lib._name)
    if os.environ.get("LLAMA_CPP_LIB_PATH"):
        source = "LLAMA_CPP_LIB_PATH"
    elif is_frozen():
        source = "bundled"
    else:
        source = "llama-cpp-python"
    return LlamaBuild(
        llama_cpp_python=llama_cpp.__version__,
        commit=_ggml_string(library, "ggml_commit"),
        ggml_version=_ggml_string(library, "ggml_version"),
        library=str(Path(library).resolve()),
        ggml_library=_file_defining(library, "ggml_backend_dev_count"),
        library_source=source,
        backends=tuple(backends() or ()),
        gpu_offload=supports_gpu_offload(),
    )


def _ggml_string(library: str, function: str) -> str | None:
    """ggml_version() / ggml_commit(), found through libllama's dependencies; None in builds without them."""
    try:
        func = getattr(ctypes.CDLL(library), function)
    except (AttributeError, OSError):
        return None
    func.restype = ctypes.c_char_p
    func.argtypes = []
    value = func()
    return value.decode("utf-8", "replace") if value else None


class _DlInfo(ctypes.Structure):
    _fields_ = (
        ("dli_fname", ctypes.c_char_p),
        ("dli_fbase", ctypes.c_void_p),
        ("dli_sname", ctypes.c_char_p),
        ("dli_saddr", ctypes.c_void_p),
    )


def _file_defining(library: str, symbol: str) -> str | None:
    """The shared library file that `symbol`, looked up from `library`, comes from (dladdr; POSIX only)."""
    try:
        dladdr = ctypes.CDLL(None).dladdr
        address = ctypes.cast(getattr(ctypes.CDLL(library), symbol), ctypes.c_void_p)
    except (AttributeError, OSError, TypeError):
        return None
    dladdr.argtypes = [ctypes.c_void_p, ctypes.POINTER(_DlInfo)]
    dladdr.restype = ctypes.c_int
    info = _DlInfo()
    if not dladdr(address, ctypes.byref(info)) or not info.dli_fname:
        return None
    return str(Path(os.fsdecode(info.dli_fname)).resolve())
