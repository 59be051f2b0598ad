"""Whether llama.cpp may repack quantized weights on this CPU.

On Xeons that advertise AMX, llama.cpp repacks Q4_K/Q8_0/... weights into AMX buffers and the
first llama_decode dies with SIGSEGV. Repacking only buys speed, so where the CPU advertises AMX
it is off, and elsewhere a child process tries it once on a tiny quantized model; the verdict is
cached in the data dir per CPU and llama.cpp version.
"""

from __future__ import annotations

import json
import logging
import platform
import subprocess
import tempfile
from pathlib import Path
from typing import Literal

import llama_cpp

from pinaivu_local.children import module_command

log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 120
CACHE_FILE = "repack-probe.json"


def cpu_identity() -> tuple[str, set[str]]:
    """(CPU model name, feature flags) from /proc/cpuinfo; empty where it is unavailable."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine(), set()
    name, flags = "", set[str]()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not name:
            name = value.strip()
        elif key == "flags" and not flags:
            flags = set(value.split())
    return name or platform.machine(), flags


def decide_repack(
    setting: Literal["auto", "on", "off"],
    data_dir: Path,
    *,
    probe_cmd: list[str] | None = None,
    cpu: tuple[str, set[str]] | None = None,
) -> bool:
    """Resolve the weight_repack setting to a yes/no that will not crash this machine."""
    if setting != "auto":
        return setting == "on"
    name, flags = cpu or cpu_identity()
    if any(flag.startswith("amx") for flag in flags):
        log.info("CPU advertises AMX: weight repacking off (it crashes llama.cpp there)")
        return False
    key = f"{llama_cpp.__version__}|{name}|{' '.join(sorted(flags))}"
    cache = data_dir / CACHE_FILE
    cached = _read_cache(cache)
    if cached.get("key") == key and isinstance(cached.get("safe"), bool):
        return bool(cached["safe"])
    safe, detail = _probe(probe_cmd or module_command("pinaivu_local.engine.host.repack_probe"))
    if not safe:
        log.warning("weight repacking crashed llama.cpp on this CPU (%s); serving with repacking off", detail)
    _write_cache(cache, {"key": key, "safe": safe, "detail": detail})
    return safe


def _probe(cmd: list[str]) -> tuple[bool, str]:
    with tempfile.TemporaryDirectory(prefix="pinaivu-probe-") as tmp:
        try:
            done = subprocess.run([*cmd, tmp], capture_output=True, timeout=PROBE_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired:
            return False, f"probe timed out after {PROBE_TIMEOUT_S}s"
    if done.returncode == 0:
        return True, "ok"
    how = f"signal {-done.returncode}" if done.returncode < 0 else f"exit status {done.returncode}"
    return False, how


def _read_cache(path: Path) -> dict[str, object]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_cache(path: Path, data: dict[str, object]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data))
    except OSError as exc:  # a read-only data dir only costs a probe per start
        log.debug("cannot cache the repack verdict in %s: %s", path, exc)
