"""logprobs over real HTTP with the real openai client, checked against logits recomputed here."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import llama_cpp.llama_cpp as llama
import numpy as np
import openai
import pytest
from openai.types.chat import ChatCompletionTokenLogprob

from pinaivu_local.engine.llama_model import LlamaModel, LoadOptions
from tests.helpers import AUTH, NO_EOG, RunningServer, TinyModels

MESSAGES = [{"role": "user", "content": "Say hello"}]
PROMPT = [17, 42, 99, 100, 7, 250]


class Reference:
    """The tiny model in this process: greedy decoding one token at a time, as the server runs it."""

    def __init__(self, path: Path) -> None:
        llama.llama_backend_init()
        self.model = LlamaModel(path, LoadOptions(n_gpu_layers=0))
        params = llama.llama_context_default_params()
        params.n_ctx, params.n_batch, params.n_threads, params.n_threads_batch = 512, 512, 1, 1
        self._ctx = llama.llama_init_from_model(self.model.ptr, params)
        self._batch = llama.llama_batch_init(512, 0, 1)
        self._pos = 0

    def feed(self, tokens: list[int]) -> np.ndarray:
        """Decode `tokens` after what came before; the logits after the last one."""
        for i, token in enumerate(tokens):
            self._batch.token[i], self._batch.pos[i] = token, self._pos + i
            self._batch.n_seq_id[i], self._batch.seq_id[i][0], self._batch.logits[i] = 1, 0, i == len(tokens) - 1
        self._batch.n_tokens = len(tokens)
        assert llama.llama_decode(self._ctx, self._batch) == 0
        self._pos += len(tokens)
        row = llama.llama_get_logits_ith(self._ctx, len(tokens) - 1)
        return np.ctypeslib.as_array(row, shape=(self.model.n_vocab,)).astype(np.float64)

    def close(self) -> None:
        llama.llama_batch_free(self._batch)
        llama.llama_free(self._ctx)
        self.model.close()


@pytest.fixture
def reference(tiny_models: TinyModels) -> Iterator[Reference]:
    """The F16 tiny model, which the session server serves as llama3.2:1b."""
    ref = Reference(tiny_models.f16)
    yield ref
    ref.close()


def _log_softmax(row: np.ndarray) -> np.ndarray:
    shifted = row - row.max()
    return shifted - np.log(np.exp(shifted).sum())


def test_completion_logprobs_equal_a_log_softmax_recomputed_here(client: openai.OpenAI, reference: Reference) -> None:
    bias = {**NO_EOG, "60": 4.0, "61": -3.0}  # the bias is part of the distribution reported
    out = client.completions.create(
        model="llama3.2:1b", prompt=PROMPT, max_tokens=6, temperature=0, logprobs=3, logit_bias=bias
    )
    logprobs = out.choices[0].logprobs
    assert logprobs is not None and out.usage is not None
    assert len(logprobs.tokens or []) == out.usage.completion_tokens == 6
    offsets, text = logprobs.text_offset or [], out.choices[0].text
    row = reference.feed(PROMPT)
    for i in range(6):
        for token, value in bias.items():
            row[int(token)] += value
        expected = _log_softmax(row)
        greedy = int(np.argmax(expected))
        name = reference.model.shape(greedy)[0]
        assert (logprobs.tokens or [])[i] == name
        assert (logprobs.token_logprobs or [])[i] == pytest.approx(expected[greedy], abs=2e-3)
        top = (logprobs.top_logprobs or [])[i]
        assert len(top) == 3 and top[name] == pytest.approx(expected[greedy], abs=2e-3)  # greedy: the sampled is one
        best = sorted(range(len(expected)), key=lambda t: -expected[t])[:3]
        assert sorted(top.values(), reverse=True) == pytest.approx([expected[t] for t in best], abs=2e-3)
        if "\ufffd" not in text:
            assert text[offsets[i] :].startswith(name)
        row = reference.feed([greedy])


def test_chat_logprobs_whole(client: openai.OpenAI) -> None:
    out = client.chat.completions.create(
        model="llama3.2:1b",
        messages=MESSAGES,
        max_tokens=10,
        temperature=0,
        logprobs=True,
        top_logprobs=5,
        logit_bias=NO_EOG,
    )
    choice = out.choices[0]
    assert choice.logprobs is not None and choice.logprobs.content is not None and out.usage is not None
    entries = choice.logprobs.content
    assert len(entries) == out.usage.completion_tokens == 10
    for entry in entries:
        assert entry.logprob <= 0
        values = [t.logprob for t in entry.top_logprobs]
        assert len(values) == 5 and values == sorted(values, reverse=True)
        assert entry.top_logprobs[0].token == entry.token  # greedy: the most likely token is the one taken
        assert entry.top_logprobs[0].logprob == entry.logprob
        assert sum(np.exp(values)) <= 1 + 1e-6
    text = choice.message.content or ""
    if "\ufffd" not in text:
        assert bytes(b for e in entries for b in (e.bytes or [])).decode() == text


def test_chat_logprobs_streamed_align_with_the_text_of_each_chunk(client: openai.OpenAI) -> None:
    request = {
        "model": "llama3.2:1b",
        "messages": MESSAGES,
        "max_tokens": 12,
        "temperature": 0,
        "logprobs": True,
        "top_logprobs": 2,
        "logit_bias": NO_EOG,
    }
    whole = client.chat.completions.create(**request)  # type: ignore[call-overload]
    chunks = list(client.chat.completions.create(**request, stream=True, stream_options={"include_usage": True}))
    streamed = []
    for chunk in chunks:
        if not chunk.choices or chunk.choices[0].logprobs is None:
            continue
        entries = chunk.choices[0].logprobs.content or []
        streamed += entries
        text = chunk.choices[0].delta.content or ""
        if "\ufffd" not in text:
            assert bytes(b for e in entries for b in (e.bytes or [])).decode() == text
    assert chunks[-1].usage is not None and len(streamed) == chunks[-1].usage.completion_tokens
    assert [e.model_dump() for e in streamed] == [e.model_dump() for e in whole.choices[0].logprobs.content or []]


def test_logit_bias_shows_in_the_logprobs(client: openai.OpenAI, reference: Reference) -> None:
    def first(bias: dict[str, int]) -> ChatCompletionTokenLogprob:
        out = client.chat.completions.create(
            model="llama3.2:1b",
            messages=MESSAGES,
            max_tokens=1,
            temperature=0,
            logprobs=True,
            top_logprobs=3,
            logit_bias={**NO_EOG, **bias},
        )
        assert out.choices[0].logprobs is not None and out.choices[0].logprobs.content
        return out.choices[0].logprobs.content[0]

    names = {reference.model.shape(70)[0], reference.model.shape(71)[0]}
    forced = first({"70": 100})
    assert forced.token == reference.model.shape(70)[0] and forced.logprob == pytest.approx(0.0, abs=1e-4)
    # Two tokens lifted by +100 share all the probability between them.
    both = first({"70": 100, "71": 100})
    assert {t.token for t in both.top_logprobs[:2]} == names
    assert sum(np.exp(t.logprob) for t in both.top_logprobs[:2]) == pytest.approx(1.0, abs=1e-4)
    assert both.top_logprobs[2].logprob < -50


def test_tokens_swallowed_by_a_stop_string_are_not_reported(client: openai.OpenAI) -> None:
    # A seed and a high temperature: varied text from the tiny model, the same in both runs.
    request = {"model": "llama3.2:3b", "prompt": PROMPT, "seed": 2, "temperature": 2, "logit_bias": NO_EOG}
    free = client.completions.create(**request, max_tokens=16, logprobs=1)  # type: ignore[call-overload]
    logprobs, text = free.choices[0].logprobs, free.choices[0].text
    assert logprobs is not None and logprobs.tokens and logprobs.text_offset
    names, offsets = logprobs.tokens, logprobs.text_offset
    # A token of plain text that first appears where it starts: stopping on it cuts the text right there.
    cut = next(
        i
        for i in range(1, len(names))
        if names[i].strip() and not names[i].startswith(("bytes:", "<|")) and text.find(names[i]) == offsets[i]
    )
    stopped = client.completions.create(**request, max_tokens=16, logprobs=1, stop=[names[cut]])  # type: ignore[call-overload]
    kept = stopped.choices[0].logprobs
    assert stopped.choices[0].finish_reason == "stop" and stopped.usage is not None and kept is not None
    assert stopped.choices[0].text == text[: offsets[cut]]
    assert kept.tokens == names[:cut] and kept.token_logprobs == (logprobs.token_logprobs or [])[:cut]
    assert stopped.usage.completion_tokens >= cut + 1  # the stop string's tokens were generated, not reported


def test_no_logprobs_unless_asked(client: openai.OpenAI) -> None:
    out = client.chat.completions.create(model="llama3.2:1b", messages=MESSAGES, max_tokens=2, logprobs=False)
    assert out.choices[0].logprobs is None
    text = client.completions.create(model="llama3.2:1b", prompt="hi", max_tokens=2)
    assert text.choices[0].logprobs is None
    zero = client.completions.create(model="llama3.2:1b", prompt="hi", max_tokens=2, logprobs=0, logit_bias=NO_EOG)
    assert zero.choices[0].logprobs is not None
    assert [len(top) for top in zero.choices[0].logprobs.top_logprobs or []] == [1, 1]  # the sampled token only


def test_streamed_completion_logprobs(server: RunningServer) -> None:
    body = {"model": "llama3.2:1b", "prompt": PROMPT, "max_tokens": 5, "logprobs": 2, "stream": True}
    body["logit_bias"] = NO_EOG
    with httpx.stream("POST", f"{server.v1}/completions", json=body, headers=AUTH, timeout=60) as response:
        events = [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: {")]
    tokens = [t for e in events if e["choices"][0]["logprobs"] for t in e["choices"][0]["logprobs"]["tokens"]]
    offsets = [o for e in events if e["choices"][0]["logprobs"] for o in e["choices"][0]["logprobs"]["text_offset"]]
    assert len(tokens) == 5 and offsets == sorted(offsets) and offsets[0] == 0


def test_top_logprobs_without_logprobs_is_a_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model="llama3.2:1b", messages=MESSAGES, top_logprobs=2)
    assert refused.value.body["param"] == "top_logprobs"  # type: ignore[index]


@pytest.mark.parametrize(
    ("path", "extra", "field"),
    [
        ("chat/completions", {"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        ("completions", {"logprobs": 6}, "logprobs"),
    ],
)
def test_logprob_limits(server: RunningServer, path: str, extra: dict[str, object], field: str) -> None:
    base = {"messages": MESSAGES} if path.startswith("chat") else {"prompt": "hi"}
    response = httpx.post(f"{server.v1}/{path}", json={"model": "llama3.2:1b", **base, **extra}, headers=AUTH)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", field]
