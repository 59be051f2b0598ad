"""What llama.cpp can run on here: GPU offload support and the devices ggml sees."""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

import llama_cpp.llama_cpp as llama

# enum ggml_backend_dev_type in ggml-backend.h, in order.
_DEVICE_TYPES = ("cpu", "gpu", "igpu", "accel", "meta")


@dataclass(frozen=True)
class Device:
    """One ggml backend device."""

    name: str
    description: str
    type: str
    free_bytes: int | None
    total_bytes: int | None


def supports_gpu_offload() -> bool:
    """Whether this llama.cpp build can put layers on a GPU (CUDA, Metal, Vulkan, ...)."""
    return bool(llama.llama_supports_gpu_offload())


def gpu_layers(requested: int, offload: bool) -> int:
    """The n_gpu_layers to load with: the request where the build offloads, else 0 (all on the CPU)."""
    return requested if offload else 0


def list_devices() -> list[Device] | None:
    """The devices ggml registered, with free memory; None when the library does not export the API."""
    lib = _ggml_library()
    if lib is None:
        return None
    devices = []
    for i in range(lib.ggml_backend_dev_count()):
        dev = lib.ggml_backend_dev_get(i)
        free, total = ctypes.c_size_t(0), ctypes.c_size_t(0)
        lib.ggml_backend_dev_memory(dev, ctypes.byref(free), ctypes.byref(total))
        kind = lib.ggml_backend_dev_type(dev)
        devices.append(
            Device(
                name=(lib.ggml_backend_dev_name(dev) or b"").decode("utf-8", "replace"),
                description=(lib.ggml_backend_dev_description(dev) or b"").decode("utf-8", "replace"),
                type=_DEVICE_TYPES[kind] if 0 <= kind < len(_DEVICE_TYPES) else f"type {kind}",
                free_bytes=free.value or None,
                total_bytes=total.value or None,
            )
        )
    return devices


def backends() -> list[str] | None:
    """The ggml backends this build registered (CPU, CUDA, Metal, ...); None when the API is absent."""
    lib = _ggml_library()
    if lib is None:
        return None
    return [
        (lib.ggml_backend_reg_name(lib.ggml_backend_reg_get(i)) or b"?").decode()
        for i in range(lib.ggml_backend_reg_count())
    ]


def _ggml_library() -> ctypes.CDLL | None:
    """libggml as llama-cpp-python loaded it, with the device functions typed; None if they are absent."""
    try:
        # A handle of our own on the libllama llama-cpp-python loaded (LLAMA_CPP_LIB_PATH included): ggml's
        # symbols resolve through its dependencies, and the argtypes set here never touch llama_cpp's handle.
        # (llama_cpp._ggml would load the package's own libggml, whatever LLAMA_CPP_LIB_PATH says.)
        lib = ctypes.CDLL(llama._lib._name)
        lib.ggml_backend_reg_count.restype = ctypes.c_size_t
        lib.ggml_backend_reg_count.argtypes = []
        lib.ggml_backend_reg_get.restype = ctypes.c_void_p
        lib.ggml_backend_reg_get.argtypes = [ctypes.c_size_t]
        lib.ggml_backend_reg_name.restype = ctypes.c_char_p
        lib.ggml_backend_reg_name.argtypes = [ctypes.c_void_p]
        lib.ggml_backend_dev_count.restype = ctypes.c_size_t
        lib.ggml_backend_dev_count.argtypes = []
        lib.ggml_backend_dev_get.restype = ctypes.c_void_p
        lib.ggml_backend_dev_get.argtypes = [ctypes.c_size_t]
        for name in ("ggml_backend_dev_name", "ggml_backend_dev_description"):
            getattr(lib, name).restype = ctypes.c_char_p
            getattr(lib, name).argtypes = [ctypes.c_void_p]
        lib.ggml_backend_dev_type.restype = ctypes.c_int
        lib.ggml_backend_dev_type.argtypes = [ctypes.c_void_p]
        lib.ggml_backend_dev_memory.restype = None
        lib.ggml_backend_dev_memory.argtypes = [
            ctypes.c_void_p,
            ctypes.POINTER(ctypes.c_size_t),
            ctypes.POINTER(ctypes.c_size_t),
        ]
    except (AttributeError, OSError):
        return None
    return lib
