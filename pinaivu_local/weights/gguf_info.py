"""What a GGUF file holds, read from its header alone (no weights are loaded).

The header is parsed here rather than with the `gguf` package's GGUFReader (0.19), for two
reasons measured on this 2-core machine with a 704 MB file carrying Llama-3.2-1B-Instruct's
header (128256 tokens, 280147 merges): GGUFReader took 21-30 s, as it builds numpy views of
every vocabulary entry, where this parser takes 0.2-0.6 s, as it skips arrays; and GGUFReader
cannot read a truncated file at all (a ValueError mapping the last tensor), while saying how
many bytes are missing is what `pull` and `models list` need. `gguf` supplies the type tables.
"""

from __future__ import annotations

import collections
import contextlib
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from pinaivu_local.errors import ModelFileError

# The first bytes of every GGUF (gguf.GGUF_MAGIC, as it is on disk).
GGUF_MAGIC = b"GGUF"
# GGUF value types whose size is fixed: type id -> struct format.
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9
# KV cache entries are F16 unless a server asks otherwise; ours does not.
KV_BYTES_PER_VALUE = 2


@dataclass(frozen=True)
class GGUFInfo:
    """The header facts `models list` and `doctor` show."""

    version: int
    architecture: str | None
    name: str | None
    quantization: str
    n_layer: int | None
    n_embd: int | None
    n_head: int | None
    n_head_kv: int | None
    key_length: int | None
    value_length: int | None
    context_length: int | None
    file_bytes: int
    expected_bytes: int  # where the last tensor ends: a shorter file is truncated

    @property
    def truncated(self) -> bool:
        """Whether the file ends before its last tensor does."""
        return self.file_bytes < self.expected_bytes

    def kv_cache_bytes(self, n_ctx: int) -> int | None:
        """The KV cache a context of `n_ctx` tokens takes, when the header says enough to tell."""
        if not (self.n_layer and self.n_head and self.n_embd):
            return None
        head_dim = self.n_embd // self.n_head
        return kv_cache_bytes(
            n_ctx,
            self.n_layer,
            self.n_head_kv or self.n_head,
            self.key_length or head_dim,
            self.value_length or head_dim,
        )


def kv_cache_bytes(n_ctx: int, n_layer: int, n_head_kv: int, key_dim: int, value_dim: int) -> int:
    """Bytes of an F16 KV cache: one key and one value vector per token, layer and KV head."""
    return n_ctx * n_layer * n_head_kv * (key_dim + value_dim) * KV_BYTES_PER_VALUE


def check_gguf(path: Path) -> None:
    """Raise ModelFileError unless `path` is a readable file that starts like a GGUF."""
    with _opened(path):
        pass


def read_gguf_info(path: Path) -> GGUFInfo:
    """Parse the header of a GGUF; ModelFileError when it is absent, unreadable, not a GGUF or damaged."""
    with _opened(path) as f:
        try:
            return _parse(f, path.stat().st_size)
        except (struct.error, UnicodeDecodeError, ValueError) as exc:
            raise ModelFileError(f"{path}: damaged GGUF header ({exc})") from None


@contextlib.contextmanager
def _opened(path: Path) -> Iterator[BinaryIO]:
    """`path` open just past its magic; a missing, unreadable or foreign file is a ModelFileError."""
    try:
        with path.open("rb") as f:
            magic = f.read(len(GGUF_MAGIC))
            if magic != GGUF_MAGIC:
                raise ModelFileError(f"{path}: not a GGUF file (it starts with {magic!r}, expected {GGUF_MAGIC!r})")
            yield f
    except FileNotFoundError:
        raise ModelFileError(f"{path}: model file not found") from None
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot read the model file ({exc.strerror})") from None


def _parse(f: BinaryIO, file_bytes: int) -> GGUFInfo:
    version, n_tensors, n_kv = _unpack(f, "<IQQ")
    if version < 2 or n_kv > 1 << 20 or n_tensors > 1 << 24:
        raise ValueError(f"unsupported GGUF version {version} or implausible counts")
    meta: dict[str, object] = {}
    for _ in range(n_kv):
        key = _string(f)
        meta[key] = _value(f, _unpack(f, "<I")[0])
    tensors = [_tensor_info(f) for _ in range(n_tensors)]
    alignment = int(meta.get("general.alignment", 32))  # type: ignore[call-overload]
    data_start = -(-f.tell() // alignment) * alignment
    expected = data_start + max((offset + size for _, offset, size in tensors), default=0)
    arch = meta.get("general.architecture")
    prefix = f"{arch}." if isinstance(arch, str) else ""

    def number(key: str) -> int | None:
        value = meta.get(prefix + key)
        return int(value) if isinstance(value, int) else None

    name = meta.get("general.name")
    return GGUFInfo(
        version=version,
        architecture=arch if isinstance(arch, str) else None,
        name=name if isinstance(name, str) else None,
        quantization=_quantization(meta.get("general.file_type"), tensors),
        n_layer=number("block_count"),
        n_embd=number("embedding_length"),
        n_head=number("attention.head_count"),
        n_head_kv=number("attention.head_count_kv"),
        key_length=number("attention.key_length"),
        value_length=number("attention.value_length"),
        context_length=number("context_length"),
        file_bytes=file_bytes,
        expected_bytes=expected,
    )


def _unpack(f: BinaryIO, fmt: str) -> tuple[int, ...]:
    size = struct.calcsize(fmt)
    data = f.read(size)
    if len(data) != size:
        raise ValueError("the header ends early")
    return struct.unpack(fmt, data)


def _string(f: BinaryIO) -> str:
    (length,) = _unpack(f, "<Q")
    data = f.read(length)
    if len(data) != length:
        raise ValueError("the header ends early")
    return data.decode("utf-8")


def _value(f: BinaryIO, kind: int) -> object:
    """A scalar or string; arrays are skipped (their length is returned), they are vocabularies."""
    if kind in _SCALARS:
        return _unpack(f, "<" + _SCALARS[kind])[0]
    if kind == _STRING:
        return _string(f)
    if kind == _ARRAY:
        item_kind, count = _unpack(f, "<IQ")
        if item_kind in _SCALARS:
            f.seek(count * struct.calcsize(_SCALARS[item_kind]), 1)
        else:
            for _ in range(count):
                _value(f, item_kind)
        return count
    raise ValueError(f"unknown value type {kind}")


def _tensor_info(f: BinaryIO) -> tuple[int, int, int]:
    """(ggml type, offset in the data section, size in bytes) of one tensor."""
    import gguf  # the quantization block sizes live there

    _string(f)
    (n_dims,) = _unpack(f, "<I")
    dims = _unpack(f, f"<{n_dims}Q")
    kind, offset = _unpack(f, "<IQ")
    block, type_size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(kind)]
    elements = 1
    for d in dims:
        elements *= d
    return kind, offset, elements // block * type_size


def _quantization(file_type: object, tensors: list[tuple[int, int, int]]) -> str:
    """general.file_type's name (Q4_K_M, F16, ...), else the type holding the most bytes."""
    import gguf

    if isinstance(file_type, int):
        try:
            return gguf.LlamaFileType(file_type).name.removeprefix("MOSTLY_").removeprefix("ALL_")
        except ValueError:
            return f"file type {file_type}"
    by_bytes: collections.Counter[int] = collections.Counter()
    for kind, _, size in tensors:
        by_bytes[kind] += size
    return gguf.GGMLQuantizationType(by_bytes.most_common(1)[0][0]).name if by_bytes else "unknown"
