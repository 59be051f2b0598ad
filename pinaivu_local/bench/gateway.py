"""What a gateway adds to each request: one node on a tiny model, asked directly and through a gateway in turn.

The tiny model makes the node's own work small and steady, so what differs between the two paths is
the gateway: its key check, limits, record, routing and the second HTTP hop. Requests alternate
between the paths, one at a time, so both see the same machine.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from pinaivu_local.bench.servers import ServerProcess, ServerSetup, free_port, spawn, start_ours, wait_ready
from pinaivu_local.children import module_command
from pinaivu_local.tiny_models.writer import write_tiny_model

MODEL_ID = "llama3.2:1b"


@dataclass(frozen=True)
class GatewayLatency:
    """Per-request wall times in ms, straight to the node and through the gateway."""

    direct_ms: tuple[float, ...]
    gateway_ms: tuple[float, ...]

    def render(self) -> str:
        """A small table: p50 and p99 of each path and what the gateway adds."""
        rows = [("direct to the node", self.direct_ms), ("through the gateway", self.gateway_ms)]
        lines = [f"gateway latency, {len(self.direct_ms)} requests per path (max_tokens 1, whole answers)", ""]
        lines.append(f"{'':22} {'p50 ms':>8} {'p99 ms':>8}")
        for name, values in rows:
            lines.append(f"{name:22} {percentile(values, 50):8.2f} {percentile(values, 99):8.2f}")
        added = [percentile(self.gateway_ms, q) - percentile(self.direct_ms, q) for q in (50, 99)]
        lines.append(f"{'added by the gateway':22} {added[0]:8.2f} {added[1]:8.2f}")
        return "\n".join(lines)


def percentile(values: tuple[float, ...], q: int) -> float:
    """The q-th percentile (inclusive method)."""
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def measure_gateway(work_dir: Path, requests: int, say: Callable[[str], None]) -> GatewayLatency:
    """Start a node and a gateway in front of it, time `requests` requests on each path, stop both."""
    work_dir.mkdir(parents=True, exist_ok=True)
    model = write_tiny_model(work_dir / "gateway-tiny.gguf")
    setup = ServerSetup(model=model, model_id=MODEL_ID, n_ctx=512, parallel=4, threads=1, weight_repack=False)
    servers: list[ServerProcess] = []
    try:
        say("starting a node and a gateway in front of it")
        (work_dir / "node").mkdir(exist_ok=True)
        node = start_ours(setup, work_dir / "node")
        servers.append(node)
        servers.append(gateway := _start_gateway(setup, node, work_dir / "gateway"))
        body = {"model": MODEL_ID, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
        headers = {"authorization": f"Bearer {setup.api_key}"}
        times: dict[str, list[float]] = {node.base_url: [], gateway.base_url: []}
        with httpx.Client(headers=headers, timeout=30) as http:
            for i in range(requests * 2 + 20):
                base = (node, gateway)[i % 2].base_url
                start = time.perf_counter()
                http.post(f"{base}/v1/chat/completions", json=body).raise_for_status()
                if i >= 20:  # the first ones warm connections and caches
                    times[base].append((time.perf_counter() - start) * 1000)
        return GatewayLatency(tuple(times[node.base_url]), tuple(times[gateway.base_url]))
    finally:
        for server in servers:
            server.stop()


def _start_gateway(setup: ServerSetup, node: ServerProcess, work_dir: Path) -> ServerProcess:
    """`serve --nodes ... --no-local` in front of `node`, with the same key and no limits in the way."""
    work_dir.mkdir(parents=True, exist_ok=True)
    nodes = work_dir / "nodes.toml"
    nodes.write_text(f'[nodes.node]\nurl = "{node.base_url}"\napi_key_env = "PINAIVU_BENCH_NODE_KEY"\n')
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PINAIVU_")}
    env.update(
        PINAIVU_DATA_DIR=str(work_dir / "data"),
        PINAIVU_LOG_LEVEL="warning",
        PINAIVU_API_KEY=setup.api_key,
        PINAIVU_BENCH_NODE_KEY=setup.api_key,
        PINAIVU_DEFAULT_RPM=str(10**9),
        PINAIVU_DEFAULT_TPM=str(10**12),
    )
    cmd = [*module_command("pinaivu_local"), "serve", "--port", str(port), "--nodes", str(nodes), "--no-local"]
    server = spawn("gateway", cmd, env, port, work_dir)
    wait_ready(server, "/health", lambda body: isinstance(body, dict) and body.get("status") == "ok")
    return server
