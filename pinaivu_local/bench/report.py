"""The benchmark's results as Markdown (a table per scenario, then a summary with ratios) and as JSON."""

from __future__ import annotations

from typing import Any

from pinaivu_local.bench.load import REQUESTS_PER_ROUND, LevelResult, duration
from pinaivu_local.bench.runner import LLAMA_SERVER, OURS, PEER, BenchReport, ScenarioRun, ServerRun, layers_label

RATIO_NOTE = (
    "ratios say how much better ours is, above 1 is better: tok/s ours / theirs, time to first token theirs / ours"
)


def render(report: BenchReport) -> str:
    """A Markdown report: conditions, a table per scenario, resident memory, then the summary."""
    lines = [
        f"machine: {report.nproc} CPUs ({report.cpu}); threads {report.threads}; "
        f"weight repack {'on' if report.weight_repack else 'off'} for every server",
        _placement(report),
        f"{report.config.rounds} round(s) per concurrency, servers taking turns round by round; "
        f"at least {REQUESTS_PER_ROUND} requests a round (below that concurrency, each stream sends several "
        "back to back); streams greedy, end-of-generation ignored",
    ]
    for run in report.runs:
        lines += ["", *_scenario(run)]
    lines += ["", f"### summary: the best of {report.config.rounds} round(s) for each server", "", *_summary(report)]
    lines += ["", RATIO_NOTE]
    lines.append("other CPU: share of the machine used by other processes meanwhile (noise; 0% is a quiet machine)")
    lines.append(
        "CPU ms/token: the server process's CPU time per generated token (llama.cpp's spinning threads included)"
    )
    return "\n".join(lines)


def _placement(report: BenchReport) -> str:
    layers = report.config.gpu_layers
    if layers == 0:
        return "every layer on the CPU"
    where = ", ".join(report.gpus) or "the GPU"
    return f"{layers_label(layers)} layers offloaded to {where} by every server"


def _scenario(run: ScenarioRun) -> list[str]:
    scenario, setup = run.scenario, run.setup
    ours = _find(run, OURS)
    peers = [s for s in run.servers if s.name != OURS] if ours else []
    kind = (
        f"chats, a {scenario.shared_prefix_tokens}-token system prompt shared by each round's streams (new each round)"
        if scenario.shared_prefix_tokens
        else "text completions, distinct prompts"
    )
    prompts = ", ".join(f"{s.name} {s.prompt_tokens}" for s in run.servers)
    lines = [
        f"### {scenario.name}: {scenario.title}",
        f"model: {setup.model.name} ({run.model_bytes / 2**20:.0f} MiB); n_ctx {setup.n_ctx}, "
        f"{setup.parallel} sequences / slots",
        f"workload: {kind}; prompt tokens ({prompts}); {scenario.max_tokens} new tokens per stream",
        f"streaming: {OURS} sends a stream's new text every {setup.stream_interval_ms:g} ms at most "
        "(--stream-interval-ms; 0: every token), the others every token",
        "",
    ]
    header = ["streams"]
    for server in run.servers:
        header += [f"{server.name} tok/s", "TTFT p50", "TTFT p95", "CPU ms/token", "other CPU"]
    for peer in peers:
        header += [f"vs {peer.name}: tok/s", "TTFT p50"]
    lines += [_row(header), _row(["---"] * len(header))]
    for i, concurrency in enumerate(scenario.concurrency):
        row = [str(concurrency)]
        for server in run.servers:
            level = server.levels[i]
            row += [
                f"{level.tokens_per_s:.1f}",
                duration(level.ttft(50)),
                duration(level.ttft(95)),
                f"{level.cpu_ms_per_token:.2f}",
                f"{100 * level.background_cpu:.0f}%",
            ]
        for peer in peers:
            mine, theirs = ours.levels[i], peer.levels[i]  # type: ignore[union-attr]
            row += [_ratio(mine.tokens_per_s, theirs.tokens_per_s), _ratio(theirs.ttft(50), mine.ttft(50))]
        lines.append(_row(row))
    lines.append("")
    for server in run.servers:
        lines.append(f"{server.name}: {_memory(server)}{_short_note(server, scenario.max_tokens)}")
    return lines


def _summary(report: BenchReport) -> list[str]:
    """The issue's table: one row per scenario and concurrency for tok/s, and one for the TTFT."""
    names = [n for n in (OURS, LLAMA_SERVER, PEER) if any(_find(run, n) for run in report.runs)]
    peers = [n for n in names if n != OURS]
    header = ["workload", *names, *(f"ours / {p}" for p in peers)]
    lines = [_row(header), _row(["---"] * len(header))]
    for run in report.runs:
        for i, concurrency in enumerate(run.scenario.concurrency):
            label = f"{run.scenario.title}, {concurrency} stream{'s' if concurrency > 1 else ''}"
            levels = {n: server.levels[i] for n in names if (server := _find(run, n))}
            ours = levels.get(OURS)
            speed = [f"{levels[n].best_tokens_per_s():.1f} tok/s" if n in levels else "-" for n in names]
            speed += [
                _ratio(ours.best_tokens_per_s(), levels[p].best_tokens_per_s()) if ours and p in levels else "-"
                for p in peers
            ]
            lines.append(_row([f"{label}, {run.scenario.max_tokens} tokens", *speed]))
            ttft = [duration(levels[n].best_ttft(50)) if n in levels else "-" for n in names]
            ttft += [
                _ratio(levels[p].best_ttft(50), ours.best_ttft(50)) if ours and p in levels else "-" for p in peers
            ]
            lines.append(_row(["same, time to first token p50", *ttft]))
    return lines


def _find(run: ScenarioRun, name: str) -> ServerRun | None:
    return next((s for s in run.servers if s.name == name), None)


def as_json(report: BenchReport) -> dict[str, Any]:
    """The same results, machine-readable."""
    return {
        "cpu": report.cpu,
        "nproc": report.nproc,
        "threads": report.threads,
        "weight_repack": report.weight_repack,
        "gpu_layers": report.config.gpu_layers,
        "gpus": list(report.gpus),
        "rounds": report.config.rounds,
        "scenarios": [
            {
                "name": run.scenario.name,
                "title": run.scenario.title,
                "model": str(run.setup.model),
                "model_bytes": run.model_bytes,
                "n_ctx": run.setup.n_ctx,
                "parallel": run.setup.parallel,
                "max_tokens": run.scenario.max_tokens,
                "shared_prefix_tokens": run.scenario.shared_prefix_tokens,
                "servers": [_server_json(server) for server in run.servers],
            }
            for run in report.runs
        ],
    }


def _server_json(server: ServerRun) -> dict[str, Any]:
    return {
        "name": server.name,
        "prompt_tokens": server.prompt_tokens,
        "rss_loaded_bytes": server.rss_loaded,
        "rss_after_bytes": server.rss_after,
        "rss_peak_bytes": server.rss_peak,
        "levels": [_level_json(level) for level in server.levels],
    }


def _level_json(level: LevelResult) -> dict[str, Any]:
    return {
        "concurrency": level.concurrency,
        "tokens": level.tokens,
        "wall_s": round(level.wall_s, 3),
        "tokens_per_s": round(level.tokens_per_s, 2),
        "ttft_p50_s": round(level.ttft(50), 6),
        "ttft_p95_s": round(level.ttft(95), 6),
        "best_round_tokens_per_s": round(level.best_tokens_per_s(), 2),
        "best_round_ttft_p50_s": round(level.best_ttft(50), 6),
        "background_cpu": round(level.background_cpu, 3),
        "server_cpu_ms_per_token": round(level.cpu_ms_per_token, 3),
        "finish_reasons": sorted({str(s.finish_reason) for s in level.streams}),
    }


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "-"


def _memory(server: ServerRun) -> str:
    mib = 2**20
    return (
        f"resident memory {server.rss_loaded / mib:.0f} MiB with the model loaded, "
        f"{server.rss_after / mib:.0f} MiB after the run (peak {server.rss_peak / mib:.0f} MiB)"
    )


def _short_note(server: ServerRun, max_tokens: int) -> str:
    short = sum(level.short_streams(max_tokens) for level in server.levels)
    return f"; {short} stream(s) ended at end-of-generation before {max_tokens} tokens" if short else ""
