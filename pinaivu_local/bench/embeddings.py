"""Embeddings per second for 64-input requests, ours against llama-server --embeddings on the same GGUF,
and a chat stream's time per token on our server while embeddings run on the same model.

    pinaivu-local bench --embeddings 10 [--llama-server /path/to/llama-server]   (the make bench row)
    python -m pinaivu_local.bench.embeddings --llama-server /path/to/llama-server [--rounds 10]  (both)

The embedding model is BERT with all-MiniLM-L6-v2's shapes (6 layers, 384 wide) and random weights
(tiny_models/bert_writer.py); the chat model is the tiny Llama the bench's --tiny runs use.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from pinaivu_local.bench.servers import (
    ServerProcess,
    ServerSetup,
    free_port,
    our_catalog,
    spawn,
    start_ours,
    wait_ready,
)
from pinaivu_local.children import module_command
from pinaivu_local.tiny_models.bert_writer import BertShape, write_tiny_embedding_model
from pinaivu_local.tiny_models.writer import write_tiny_model

MINILM_SHAPE = BertShape(n_embd=384, n_layer=6, n_head=6, n_ff=1536, n_ctx_train=512)
BATCH = 64
# Logit bias keeping the tiny chat model from ending early (its end-of-generation tokens).
NO_EOG = {"321": -100, "324": -100, "325": -100}


def _texts(round_: int) -> list[str]:
    return [f"document {round_}-{i}: the quick brown fox jumps over the lazy dog " * 2 for i in range(BATCH)]


def embeddings_per_second(base_url: str, model: str, key: str, rounds: int) -> float:
    """Sequential 64-input requests: inputs embedded per second, after one warm-up request."""
    with httpx.Client(timeout=600, headers={"authorization": f"Bearer {key}"}) as client:
        client.post(
            f"{base_url}/v1/embeddings", json={"model": model, "input": _texts(-1), "encoding_format": "base64"}
        ).raise_for_status()
        start = time.perf_counter()
        for r in range(rounds):
            response = client.post(
                f"{base_url}/v1/embeddings", json={"model": model, "input": _texts(r), "encoding_format": "base64"}
            )
            response.raise_for_status()
            assert len(response.json()["data"]) == BATCH
        return BATCH * rounds / (time.perf_counter() - start)


def start_ours_embedding(setup: ServerSetup, work_dir: Path) -> ServerProcess:
    """Our server with the one model as an embedding model (the bench's start_ours, kind added)."""
    catalog = work_dir / "bench-models.toml"
    catalog.write_text(our_catalog(setup) + 'kind = "embedding"\n')
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PINAIVU_")}
    env.update(
        PINAIVU_DATA_DIR=str(work_dir / "data"),
        PINAIVU_THREADS=str(setup.threads),
        PINAIVU_WEIGHT_REPACK="off",
        PINAIVU_LOG_LEVEL="warning",
        PINAIVU_API_KEY=setup.api_key,
        PINAIVU_DEFAULT_RPM=str(10**9),
        PINAIVU_DEFAULT_TPM=str(10**12),
    )
    cmd = [*module_command("pinaivu_local"), "serve", "--port", str(port), "--models-file", str(catalog)]
    server = spawn("pinaivu-local", cmd, env, port, work_dir)
    wait_ready(server, "/health", lambda body: any(m.get("state") == "ready" for m in body.get("models", [])))
    return server


def start_llama_server_embeddings(binary: Path, setup: ServerSetup, work_dir: Path) -> ServerProcess:
    """llama-server --embeddings on the same GGUF: 8 slots, one unified cache, batches as large as ours."""
    port = free_port()
    cmd = [
        str(binary),
        *("--model", str(setup.model), "--alias", setup.model_id, "--host", "127.0.0.1", "--port", str(port)),
        *("--embeddings", "--pooling", "mean", "--parallel", str(setup.parallel), "--kv-unified"),
        *("--ctx-size", str(setup.n_ctx), "--batch-size", "2048", "--ubatch-size", "2048"),
        *("--threads", str(setup.threads), "--threads-batch", str(setup.threads), "--n-gpu-layers", "0"),
    ]
    server = spawn("llama-server", cmd, {}, port, work_dir)
    wait_ready(server, "/v1/models", lambda body: setup.model_id in str(body))
    return server


@dataclass(frozen=True)
class EmbeddingsRate:
    """Inputs embedded per second in 64-input requests, ours and llama-server's on the same GGUF and run."""

    model: str  # what the GGUF is
    rounds: int
    threads: int
    ours: float
    llama_server: float | None  # None: not measured (no --llama-server)

    @property
    def ratio(self) -> float | None:
        """Ours over llama-server's (above 1: we are faster)."""
        return None if self.llama_server is None else self.ours / self.llama_server

    def render(self) -> str:
        """A small table: each server's embeddings/s and the ratio."""
        lines = [f"embeddings, {self.rounds} requests of {BATCH} inputs each, {self.model}, {self.threads} threads", ""]
        lines.append(f"{'':16} {'embeddings/s':>12}")
        lines.append(f"{'pinaivu-local':16} {self.ours:12.1f}")
        peer = "not measured (give --llama-server)" if self.llama_server is None else f"{self.llama_server:12.1f}"
        lines.append(f"{'llama-server':16} {peer}")
        if self.ratio is not None:
            lines.append(f"{'ours / theirs':16} {self.ratio:12.2f}")
        return "\n".join(lines)

    def as_json(self) -> dict[str, Any]:
        """The figures, for bench-embeddings.json."""
        return {
            "model": self.model,
            "batch": BATCH,
            "rounds": self.rounds,
            "threads": self.threads,
            "embeddings_per_s": {"pinaivu-local": self.ours, "llama-server": self.llama_server},
            "ratio": self.ratio,
        }


def measure_embeddings(
    folder: Path, rounds: int, *, llama_server: Path | None, threads: int, tiny: bool, echo: Callable[[str], None]
) -> EmbeddingsRate:
    """Our server, then llama-server where given, on the same generated BERT GGUF (MiniLM-L6's shapes, or
    the tiny test shape with `tiny`), one after the other: the same machine, the same requests."""
    folder.mkdir(parents=True, exist_ok=True)
    threads = threads or os.cpu_count() or 1
    shape = None if tiny else MINILM_SHAPE
    model = "tiny BERT (64 wide, 2 layers) F32" if tiny else "BERT with MiniLM-L6's shapes (384 wide, 6 layers) F32"
    gguf = write_tiny_embedding_model(
        folder / ("tiny-bert.gguf" if tiny else "minilm-shape-bert-F32.gguf"), shape=shape, seed=7
    )
    setup = ServerSetup(gguf, "embed", 4096, 8, threads, weight_repack=False)
    (folder / "ours").mkdir(exist_ok=True)
    echo("embeddings: pinaivu-local")
    ours = start_ours_embedding(setup, folder / "ours")
    try:
        ours_rate = embeddings_per_second(ours.base_url, "embed", setup.api_key, rounds)
    finally:
        ours.stop()
    peer_rate = None
    if llama_server is not None:
        (folder / "peer").mkdir(exist_ok=True)
        echo("embeddings: llama-server --embeddings")
        peer = start_llama_server_embeddings(llama_server, setup, folder / "peer")
        try:
            peer_rate = embeddings_per_second(peer.base_url, "embed", "none", rounds)
        finally:
            peer.stop()
    return EmbeddingsRate(model, rounds, threads, ours_rate, peer_rate)


def chat_ms_per_token(base_url: str, key: str, model: str, samples: int) -> list[float]:
    """Wall milliseconds per token of streamed 64-token chats, request sent to last token (so a stream
    held back at any point counts, whenever the client reads it)."""
    out = []
    body = {
        "model": model,
        "messages": [{"role": "user", "content": "Count"}],
        "max_tokens": 64,
        "stream": True,
        "logit_bias": NO_EOG,
    }
    headers = {"authorization": f"Bearer {key}", "x-pinaivu-stream-interval-ms": "0"}
    with httpx.Client(timeout=600, headers=headers) as client:
        for _ in range(samples):
            start = time.perf_counter()
            with client.stream("POST", f"{base_url}/v1/chat/completions", json=body) as response:
                for _line in response.iter_lines():
                    pass
            out.append((time.perf_counter() - start) * 1000 / 64)
    return out


def main() -> None:
    """Run both measurements and print one line each."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--llama-server", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        embed = write_tiny_embedding_model(work / "minilm-shape-bert-F32.gguf", shape=MINILM_SHAPE, seed=7)
        setup = ServerSetup(embed, "embed", 4096, 8, args.threads, weight_repack=False)
        (work / "ours").mkdir()
        ours = start_ours_embedding(setup, work / "ours")
        try:
            ours_rate = embeddings_per_second(ours.base_url, "embed", setup.api_key, args.rounds)
        finally:
            ours.stop()
        (work / "peer").mkdir()
        peer = start_llama_server_embeddings(args.llama_server, setup, work / "peer")
        try:
            peer_rate = embeddings_per_second(peer.base_url, "embed", "none", args.rounds)
        finally:
            peer.stop()
        print(
            f"embeddings/s, 64-input requests, BERT MiniLM-L6 shape: ours {ours_rate:.1f}, llama-server {peer_rate:.1f}"
        )

        chat = write_tiny_model(work / "chat.gguf")
        chat_setup = ServerSetup(chat, "chat", 2048, 4, args.threads, weight_repack=False)
        (work / "chat").mkdir()
        server = start_ours(chat_setup, work / "chat")
        try:
            idle = chat_ms_per_token(server.base_url, chat_setup.api_key, "chat", 5)
            stop = threading.Event()

            def load() -> None:
                while not stop.is_set():
                    embeddings_per_second(server.base_url, "chat", chat_setup.api_key, 1)

            thread = threading.Thread(target=load, daemon=True)
            thread.start()
            time.sleep(1)
            busy = chat_ms_per_token(server.base_url, chat_setup.api_key, "chat", 5)
            stop.set()
            thread.join()
        finally:
            server.stop()
        print(
            f"chat ms/token on the same model: idle median {statistics.median(idle):.2f} "
            f"(max {max(idle):.2f}); with 64-input embedding requests back to back median "
            f"{statistics.median(busy):.2f} (max {max(busy):.2f})"
        )


if __name__ == "__main__":
    main()
