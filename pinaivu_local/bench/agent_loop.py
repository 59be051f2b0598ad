"""Time to first token per turn of a coding agent's tool loop over Anthropic's Messages API, ours against
llama-server on the same GGUF in the same run.

    python -m pinaivu_local.bench.agent_loop --llama-server /path/to/llama-server [--model X.gguf] [--turns 8]

Each turn sends what an agent such as Claude Code sends: a long system prompt whose first line is a
per-request `x-anthropic-billing-header` (a new `cch=` every turn), two tools, and the whole history of
earlier calls and their results; the answer is streamed and cut at 8 tokens. What a server keeps of the
prefix from one turn to the next decides the turn's time to first token. The calls in the history are
written by this script, not by the model, so both servers see the same conversation turn by turn.
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from pinaivu_local.bench.servers import (
    ServerProcess,
    ServerSetup,
    llama_server_command,
    spawn,
    start_ours,
    wait_ready,
)
from pinaivu_local.bench.servers import free_port as _free_port
from pinaivu_local.tiny_models.writer import write_tiny_model

# About 1,500 tokens of the tiny model's byte-level vocabulary: with 8 turns the conversation stays within
# the 4,096 tokens the tiny model was trained on, which llama-server holds its context to.
RULES = ("You are a careful coding agent. Read files before editing them, run the tests, explain briefly. " * 20)[:1500]
TOOLS = [
    {
        "name": "read_file",
        "description": "Read a file of the project",
        "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]},
    },
    {
        "name": "list_dir",
        "description": "List a folder of the project",
        "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}},
    },
]


@dataclass(frozen=True)
class Turn:
    """One turn as a server answered it."""

    ttft_ms: float
    input_tokens: int | None
    cached_tokens: int | None


def run_loop(base_url: str, key: str, model: str, turns: int) -> list[Turn]:
    """The tool loop's turns, each streamed over a fresh connection (llama-server closes idle ones)."""
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Look at the project and say what it does."}]
    out = []
    for turn in range(turns):
        billing = f"x-anthropic-billing-header: cc_version=2.1.37; cc_entrypoint=cli; cch={secrets.token_hex(3)[:5]};"
        body = {
            "model": model,
            "max_tokens": 8,
            "system": [{"type": "text", "text": billing}, {"type": "text", "text": RULES}],
            "messages": messages,
            "tools": TOOLS,
            "stream": True,
            "temperature": 0,
        }
        out.append(_streamed_turn(base_url, key, body))
        call = f"toolu_{turn:04d}"
        messages += [
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": call, "name": "read_file", "input": {"path": f"src/m{turn}.py"}}
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": call, "content": f"def f{turn}(x):\n    return x\n" * 4}
                ],
            },
        ]
    return out


def _streamed_turn(base_url: str, key: str, body: dict[str, Any]) -> Turn:
    headers = {"x-api-key": key, "authorization": f"Bearer {key}", "anthropic-version": "2023-06-01"}
    first: float | None = None
    usage: dict[str, Any] = {}
    with httpx.Client(timeout=600) as client:
        start = time.perf_counter()
        with client.stream("POST", f"{base_url}/v1/messages", json=body, headers=headers) as response:
            if response.status_code != 200:
                raise RuntimeError(f"{base_url}: HTTP {response.status_code}: {response.read()[:500]!r}")
            for line in response.iter_lines():
                if not line.startswith("data: "):
                    continue
                event = json.loads(line[6:])
                if first is None and event.get("type") in ("content_block_delta", "message_delta"):
                    first = time.perf_counter() - start
                if event.get("type") == "message_start":
                    usage.update(event["message"].get("usage") or {})
                if event.get("type") == "message_delta":
                    usage.update(event.get("usage") or {})
    if first is None:
        raise RuntimeError(f"{base_url}: the stream ended without a token")
    return Turn(first * 1000, usage.get("input_tokens"), usage.get("cache_read_input_tokens"))


def start_llama_server_jinja(binary: Path, setup: ServerSetup, work_dir: Path) -> ServerProcess:
    """llama-server with the GGUF's Jinja template (what its /v1/messages tools need), one slot."""
    port = _free_port()
    server = spawn("llama-server", [*llama_server_command(binary, setup, port), "--jinja"], {}, port, work_dir)
    wait_ready(server, "/v1/models", lambda body: setup.model_id in str(body))
    return server


def render(name: str, turns: list[Turn]) -> str:
    """One line per turn, then the median of the turns after the first (those a prefix cache can serve)."""
    lines = [f"{name}:"]
    for i, t in enumerate(turns, 1):
        lines.append(f"  turn {i}: ttft {t.ttft_ms:8.1f} ms, input_tokens {t.input_tokens}, cached {t.cached_tokens}")
    later = [t.ttft_ms for t in turns[1:]]
    if later:
        lines.append(f"  median ttft of turns 2..{len(turns)}: {statistics.median(later):.1f} ms")
    return "\n".join(lines)


def main() -> None:
    """Run the loop on our server, then on llama-server, with the same GGUF and settings."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--llama-server", type=Path, required=True)
    parser.add_argument("--model", type=Path, help="a chat GGUF (default: the tiny generated Llama)")
    parser.add_argument("--turns", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pinaivu-agent-loop-") as tmp:
        work = Path(tmp)
        model = args.model or write_tiny_model(work / "tiny.gguf")
        setup = ServerSetup(model, "agent", 8192, 1, args.threads, weight_repack=False)
        for name, start in (
            ("pinaivu-local", lambda d: start_ours(setup, d)),
            ("llama-server", lambda d: start_llama_server_jinja(args.llama_server, setup, d)),
        ):
            folder = work / name
            folder.mkdir()
            server = start(folder)
            try:
                print(render(name, run_loop(server.base_url, setup.api_key, setup.model_id, args.turns)), flush=True)
            finally:
                server.stop()


if __name__ == "__main__":
    main()
