"""The benchmark's results as a Markdown table, ratios and memory, and as JSON."""

from __future__ import annotations

from typing import Any

from pinaivu_local.bench.load import LevelResult
from pinaivu_local.bench.runner import OURS, BenchReport, ServerRun


def render(report: BenchReport) -> str:
    """A Markdown report: conditions, one row per concurrency, ratios, resident memory."""
    config, setup = report.config, report.setup
    runs = {run.name: run for run in report.runs}
    ours = runs.get(OURS)
    peers = [run for run in report.runs if run.name != OURS] if ours else []
    lines = [
        f"machine: {report.nproc} CPUs ({report.cpu}); threads {setup.threads}; "
        f"weight repack {'on' if setup.weight_repack else 'off'} for both servers",
        f"model: {setup.model.name} ({report.model_bytes / 2**20:.0f} MiB); n_ctx {setup.n_ctx}, "
        f"{setup.parallel} sequences (ours)",
        f"workload: /v1/completions streamed, prompt {ours.prompt_tokens if ours else '?'} tokens, "
        f"{config.max_tokens} new tokens per stream (end-of-generation ignored), greedy, "
        f"{config.rounds} round(s) per concurrency, servers taking turns round by round",
        "",
    ]
    header = ["streams"]
    for run in report.runs:
        header += [f"{run.name} tok/s", "TTFT p50 s", "TTFT p95 s", "other CPU"]
    for peer in peers:
        header += [f"tok/s ratio vs {peer.name}", "TTFT p50 ratio"]
    lines += [_row(header), _row(["---"] * len(header))]
    for i, concurrency in enumerate(config.concurrency):
        row = [str(concurrency)]
        for run in report.runs:
            level = run.levels[i]
            row += [
                f"{level.tokens_per_s:.1f}",
                f"{level.ttft(50):.2f}",
                f"{level.ttft(95):.2f}",
                f"{100 * level.background_cpu:.0f}%",
            ]
        for peer in peers:
            mine, theirs = ours.levels[i], peer.levels[i]  # type: ignore[union-attr]
            row += [_ratio(mine.tokens_per_s, theirs.tokens_per_s), _ratio(mine.ttft(50), theirs.ttft(50))]
        lines.append(_row(row))
    lines.append("")
    if peers:
        lines.append("ratios are ours / the peer's: above 1 is faster for tok/s, below 1 is faster for TTFT")
    lines.append("other CPU: share of the machine used by other processes meanwhile (noise; 0% is a quiet machine)")
    for run in report.runs:
        lines.append(f"{run.name}: {_memory(run)}{_short_note(run, config.max_tokens)}")
    return "\n".join(lines)


def as_json(report: BenchReport) -> dict[str, Any]:
    """The same results, machine-readable."""
    return {
        "cpu": report.cpu,
        "nproc": report.nproc,
        "model": str(report.setup.model),
        "model_bytes": report.model_bytes,
        "threads": report.setup.threads,
        "weight_repack": report.setup.weight_repack,
        "max_tokens": report.config.max_tokens,
        "rounds": report.config.rounds,
        "servers": [
            {
                "name": run.name,
                "prompt_tokens": run.prompt_tokens,
                "rss_loaded_bytes": run.rss_loaded,
                "rss_after_bytes": run.rss_after,
                "rss_peak_bytes": run.rss_peak,
                "levels": [_level_json(level) for level in run.levels],
            }
            for run in report.runs
        ],
    }


def _level_json(level: LevelResult) -> dict[str, Any]:
    return {
        "concurrency": level.concurrency,
        "tokens": level.tokens,
        "wall_s": round(level.wall_s, 3),
        "tokens_per_s": round(level.tokens_per_s, 2),
        "ttft_p50_s": round(level.ttft(50), 3),
        "ttft_p95_s": round(level.ttft(95), 3),
        "background_cpu": round(level.background_cpu, 3),
        "finish_reasons": sorted({str(s.finish_reason) for s in level.streams}),
    }


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "-"


def _memory(run: ServerRun) -> str:
    mib = 2**20
    return (
        f"resident memory {run.rss_loaded / mib:.0f} MiB with the model loaded, "
        f"{run.rss_after / mib:.0f} MiB after the run (peak {run.rss_peak / mib:.0f} MiB)"
    )


def _short_note(run: ServerRun, max_tokens: int) -> str:
    short = sum(level.short_streams(max_tokens) for level in run.levels)
    return f"; {short} stream(s) ended at end-of-generation before {max_tokens} tokens" if short else ""
