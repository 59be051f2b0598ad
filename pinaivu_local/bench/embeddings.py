"""Embeddings per second for 64-input requests, ours against llama-server --embeddings on the same GGUF,
and a chat stream's time per token on our server while embeddings run on the same model.

    python -m pinaivu_local.bench.embeddings --llama-server /path/to/llama-server [--rounds 10]

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
from pathlib import Path

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
