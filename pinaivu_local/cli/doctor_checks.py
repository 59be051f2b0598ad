"""`pinaivu-local doctor`: what this machine, this build and the catalog's files allow, and what blocks serving."""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import sqlite3
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from pinaivu_local import __version__
from pinaivu_local.catalog import Catalog, load_catalog
from pinaivu_local.children import is_frozen
from pinaivu_local.errors import ConfigError
from pinaivu_local.settings import Settings
from pinaivu_local.sizes import human_bytes
from pinaivu_local.weights.inventory import ModelFile, inspect

Level = Literal["error", "warning"]


@dataclass(frozen=True)
class Problem:
    """Something off: an error blocks serving, a warning costs speed or a model."""

    level: Level
    message: str


@dataclass
class Report:
    """Everything doctor found; `problems` decides the exit status."""

    versions: dict[str, Any]
    gpu: dict[str, Any]
    cpu: dict[str, Any]
    memory: dict[str, Any]
    data_dir: dict[str, Any]
    database: dict[str, Any]
    node: dict[str, Any]
    services: dict[str, dict[str, Any] | None]  # postgres, redis, nodes: None where not configured
    catalog: str | None
    models: list[dict[str, Any]]
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Nothing blocks serving."""
        return not any(p.level == "error" for p in self.problems)

    def to_json(self) -> dict[str, Any]:
        """The report as plain data, `ok` first."""
        return {"ok": self.ok, **asdict(self)}


def diagnose(settings: Settings) -> Report:
    """Look at everything; never raises for what it finds, it reports it."""
    import llama_cpp

    from pinaivu_local.cli import doctor_services
    from pinaivu_local.engine.host.build_info import llama_build
    from pinaivu_local.engine.host.devices import list_devices, supports_gpu_offload

    offload = supports_gpu_offload()
    devices = list_devices()
    build = llama_build()
    report = Report(
        versions={
            "pinaivu_local": __version__,
            "one_file_binary": is_frozen(),
            "python": platform.python_version(),
            "llama_cpp_python": llama_cpp.__version__,
            "llama_cpp_commit": build.commit,
            "ggml": build.ggml_version,
            "llama_cpp_library": build.library,
            "llama_cpp_library_source": build.library_source,
            "ggml_library": build.ggml_library,
            "ggml_backends": list(build.backends),
            "backend": build.backend,
            "platform": platform.platform(),
            "llama_cpp_system_info": llama_cpp.llama_print_system_info().decode("utf-8", "replace").strip(),
        },
        gpu={
            "offload_supported": offload,
            "devices": [asdict(d) for d in devices] if devices is not None else None,
            "devices_note": None if devices is not None else "this llama-cpp-python exposes no ggml device API",
            "n_gpu_layers_override": settings.n_gpu_layers,
        },
        cpu=_cpu(settings),
        memory=_memory(),
        data_dir=_data_dir(settings.data_dir),
        database=_database(settings.database),
        node=_node(settings.identity_dir),
        services=doctor_services.check_configured(settings),
        catalog=None,
        models=[],
    )
    if not report.data_dir["writable"]:
        report.problems.append(
            Problem("error", f"data directory {settings.data_dir} is not writable: {report.data_dir['problem']}")
        )
    if report.node["problem"]:
        report.problems.append(Problem("error", f"node identity: {report.node['problem']}"))
    if report.database["problem"] and not settings.database_url:
        report.problems.append(Problem("error", f"database {settings.database}: {report.database['problem']}"))
    report.problems += [Problem(level, message) for level, message in doctor_services.problems(report.services)]
    try:
        catalog = load_catalog(settings.models_file, settings.models_dir)
    except ConfigError as exc:
        report.problems.append(Problem("error", exc.message))
        return report
    report.catalog = str(catalog.file)
    _check_models(report, settings, catalog, offload)
    return report


def _check_models(report: Report, settings: Settings, catalog: Catalog, offload: bool) -> None:
    files = [inspect(spec) for spec in catalog.models]
    report.models = [_model_row(f, settings, offload) for f in files]
    for f in files:
        if f.state == "missing":
            how = f"; fetch it with `{f.spec.fetch_command()}`" if f.spec.fetch_command() else ""
            report.problems.append(Problem("warning", f"{f.spec.id}: no file at {f.spec.file}{how}"))
        elif f.state == "invalid":
            report.problems.append(Problem("warning", f"{f.spec.id}: {f.problem}"))
    if not any(f.state == "ready" for f in files):
        report.problems.append(
            Problem(
                "error",
                "no catalog model can load; pull one (`pinaivu-local models pull --all`) or serve --test-models",
            )
        )
    wanted = [r["n_gpu_layers"] for r in report.models]
    if not offload and any(r["n_gpu_layers_requested"] for r in report.models):
        report.problems.append(
            Problem("warning", "GPU layers are requested but this build has no GPU offload: models run on the CPU")
        )
    _check_memory(report, files, offload and any(wanted))


def _model_row(f: ModelFile, settings: Settings, offload: bool) -> dict[str, Any]:
    requested = settings.n_gpu_layers if settings.n_gpu_layers is not None else f.spec.n_gpu_layers
    kv = f.info.kv_cache_bytes(f.spec.n_ctx) if f.info else None
    return {
        "id": f.spec.id,
        "state": f.state,
        "file": str(f.spec.file),
        "size_bytes": f.size_bytes,
        "quantization": f.info.quantization if f.info else None,
        "n_ctx": f.spec.n_ctx,
        "n_layer": f.info.n_layer if f.info else None,
        "n_gpu_layers_requested": requested,
        "n_gpu_layers": requested if offload else 0,
        "kv_cache_bytes": kv,
        "memory_bytes": f.memory_bytes(),
        "sha256_recorded": f.sha256,
        "problem": f.problem,
        "fetch_command": f.spec.fetch_command() if f.state == "missing" else None,
    }


def _check_memory(report: Report, files: list[ModelFile], on_gpu: bool) -> None:
    """Warn when the ready models together need more than there is free."""
    need = sum(f.memory_bytes() or 0 for f in files if f.state == "ready")
    devices = report.gpu["devices"] or []
    if on_gpu:
        free = sum(d["free_bytes"] or 0 for d in devices if d["type"] in ("gpu", "igpu")) or None
        where = "free GPU memory"
    else:
        free = report.memory.get("available_bytes")
        where = "available RAM"
    report.memory["models_need_bytes"] = need
    if free and need > free:
        report.problems.append(
            Problem(
                "warning",
                f"the ready models need about {human_bytes(need)} together but there is "
                f"{human_bytes(free)} of {where}; lower n_ctx or serve fewer models",
            )
        )


def _cpu(settings: Settings) -> dict[str, Any]:
    from pinaivu_local.engine.host.repack import cpu_identity, decide_repack

    name, flags = cpu_identity()
    # With auto, this reuses the cached verdict or runs the probe (a child process) once.
    repack = decide_repack(settings.weight_repack, settings.data_dir)
    return {
        "name": name,
        "cores": os.cpu_count(),
        "avx2": "avx2" in flags,
        "avx512": any(f.startswith("avx512") for f in flags),
        "amx": any(f.startswith("amx") for f in flags),
        "flags_known": bool(flags),
        "weight_repack_setting": settings.weight_repack,
        "weight_repack": repack,
    }


def _memory() -> dict[str, Any]:
    """RAM from /proc/meminfo (Linux); unknown elsewhere."""
    try:
        lines = Path("/proc/meminfo").read_text().splitlines()
    except OSError:
        return {"total_bytes": None, "available_bytes": None}
    values = {}
    for line in lines:
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            values[key] = int(parts[0]) * 1024
    return {"total_bytes": values.get("MemTotal"), "available_bytes": values.get("MemAvailable")}


def _data_dir(path: Path) -> dict[str, Any]:
    """Whether the data dir exists or can be made, takes files, and how much room it has."""
    row: dict[str, Any] = {"path": str(path), "exists": path.is_dir(), "writable": False, "free_bytes": None}
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".doctor-"):
            pass
        row["writable"] = True
        row["problem"] = None
        row["free_bytes"] = shutil.disk_usage(path).free
    except OSError as exc:
        row["problem"] = exc.strerror or str(exc)
    return row


def _database(path: Path) -> dict[str, Any]:
    """Keys and request log: readable, intact, a schema this version knows. Opened read-only."""
    from pinaivu_local.storage.database import schema_version

    row: dict[str, Any] = {"path": str(path), "exists": path.exists(), "problem": None}
    if not path.exists():
        row["note"] = "created at the first start"
        return row
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            check = conn.execute("PRAGMA quick_check").fetchone()[0]
            row["schema_version"] = version
            row["integrity"] = check
            if version > schema_version():
                row["problem"] = f"schema {version} is newer than this pinaivu-local knows ({schema_version()})"
            elif check != "ok":
                row["problem"] = f"integrity check failed: {check}"
            elif version >= 1:
                row["api_keys"] = conn.execute("SELECT count(*) FROM api_keys").fetchone()[0]
            if version >= 2 and not row["problem"]:
                row["request_records"] = conn.execute("SELECT count(*) FROM request_log").fetchone()[0]
    except sqlite3.Error as exc:
        row["problem"] = f"not a usable SQLite database ({exc})"
    return row


def _node(folder: Path) -> dict[str, Any]:
    """The receipt-signing identity: node id and current public key, read without creating it."""
    from pinaivu_local.errors import IdentityError
    from pinaivu_local.receipts.identity import published

    try:
        public = published(folder)
    except IdentityError as exc:
        return {"node_id": None, "current_key": None, "problem": exc.message}
    if public is None:
        return {"node_id": None, "current_key": None, "problem": None, "note": "created at the first start"}
    current = next((k for k in public["keys"] if k["retired_at"] is None), None)
    retired = len(public["keys"]) - (current is not None)
    return {"node_id": public["node_id"], "current_key": current, "retired_keys": retired, "problem": None}


def _node_line(node: dict[str, Any]) -> str:
    if node["problem"]:
        return f"PROBLEM: {node['problem']}"
    if node["node_id"] is None:
        return str(node["note"])
    key = node["current_key"]
    current = f"key {key['key_id']} ed25519 {key['public_key']}" if key else "no current key"
    return f"{node['node_id']}, {current} ({node['retired_keys']} retired)"


def _database_line(db: dict[str, Any]) -> str:
    if db["problem"]:
        return f"{db['path']} (PROBLEM: {db['problem']})"
    if not db["exists"]:
        return f"{db['path']} ({db['note']})"
    return (
        f"{db['path']} (schema {db['schema_version']}, {db.get('api_keys', 0)} keys, "
        f"{db.get('request_records', 0)} request records)"
    )


def _gpu_hint(versions: dict[str, Any]) -> str:
    if versions["one_file_binary"]:
        return "LLAMA_CPP_LIB_PATH=<folder of a CUDA or Metal libllama>, or make dist GPU=cuda|metal"
    return "make install GPU=cuda|metal"


def render_text(report: Report) -> str:
    """The report for people: one line per fact, problems last."""
    from pinaivu_local.cli import doctor_services

    v, gpu, cpu, mem, data = report.versions, report.gpu, report.cpu, report.memory, report.data_dir
    lines = [
        f"pinaivu-local    {v['pinaivu_local']}",
        f"python           {v['python']} ({v['platform']}{', in the one-file binary' if v['one_file_binary'] else ''})",
        f"llama-cpp-python {v['llama_cpp_python']}",
        f"llama.cpp        {v['llama_cpp_commit'] or 'commit unknown'} (ggml {v['ggml'] or '?'}), "
        f"backend {v['backend']} (ggml backends: {', '.join(v['ggml_backends']) or 'none'})",
        f"libllama         {v['llama_cpp_library']} ({v['llama_cpp_library_source']})",
        f"libggml          {v['ggml_library'] or 'unknown'}",
        f"gpu offload      {'yes' if gpu['offload_supported'] else 'no: CPU-only build (' + _gpu_hint(v) + ')'}",
    ]
    if gpu["devices"] is None:
        lines.append(f"devices          unknown: {gpu['devices_note']}")
    for d in gpu["devices"] or []:
        memory = f", {human_bytes(d['free_bytes'])} free of {human_bytes(d['total_bytes'])}" if d["total_bytes"] else ""
        lines.append(f"device           {d['name']} ({d['type']}): {d['description']}{memory}")
    yes_no = {True: "yes", False: "no"}
    repack = "on" if cpu["weight_repack"] else "off"
    lines += [
        f"cpu              {cpu['name']}, {cpu['cores']} threads; AVX2 {yes_no[cpu['avx2']]}, "
        f"AVX-512 {yes_no[cpu['avx512']]}, AMX {yes_no[cpu['amx']]}; weight repacking {repack} "
        f"(setting {cpu['weight_repack_setting']})",
        f"memory           {human_bytes(mem.get('available_bytes'))} available "
        f"of {human_bytes(mem.get('total_bytes'))}",
        f"data dir         {data['path']} "
        + (
            f"(writable, {human_bytes(data['free_bytes'])} free)"
            if data["writable"]
            else f"(NOT writable: {data['problem']})"
        ),
        f"database         {_database_line(report.database)}",
        *doctor_services.lines(report.services),
        f"node identity    {_node_line(report.node)}",
        f"catalog          {report.catalog or 'unreadable'}",
    ]
    for m in report.models:
        size = human_bytes(m["size_bytes"]) if m["size_bytes"] else "-"
        need = (
            f"needs ~{human_bytes(m['memory_bytes'])} (KV cache {human_bytes(m['kv_cache_bytes'])})"
            if m["memory_bytes"]
            else ""
        )
        place = (
            "CPU"
            if m["n_gpu_layers"] == 0
            else "GPU: all layers"
            if m["n_gpu_layers"] < 0
            else (f"GPU: {m['n_gpu_layers']} layers")
        )
        lines.append(
            f"model            {m['id']:<14} {m['state']:<8} {m['quantization'] or '-':<8} {size:>9}  "
            f"ctx {m['n_ctx']:<6} {place}  {need}".rstrip()
        )
    lines += [f"{p.level:<17}{p.message}" for p in report.problems]
    lines.append("ok: nothing blocks serving" if report.ok else "NOT ok: the errors above block serving")
    return "\n".join(lines)
