"""Embeddings and rerank scores: a context of their own on a loaded model, on a thread of their own.

A model's embedding context (`embeddings = true`, pooled per sequence) sits beside its chat context
(llama.cpp allows several contexts per model: the weights are shared, read-only). Its thread packs the
inputs of every waiting request, in order, into one llama_decode of at most `n_batch` tokens and
`n_seq_max` sequences, so a 64-input request and a few small ones go through together, and no step is
longer than one such batch: the chat scheduler's thread decodes on its own context meanwhile, and
while it has sequences running this thread uses half the threads, so chat slows down but never waits
for the embedding queue.

Every input is one whole sequence in one micro-batch (n_ubatch = n_batch): mean pooling reads all of a
sequence's tokens at once, and a model that attends both ways (BERT) needs them together. So the
longest input a model embeds is `n_batch` tokens; a longer one is refused by index, never cut.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import llama_cpp.llama_cpp as llama
import numpy as np

from pinaivu_local.catalog import ModelSpec, Pooling
from pinaivu_local.engine.batch import TokenBatch
from pinaivu_local.engine.llama_model import LlamaModel
from pinaivu_local.errors import ContextLengthExceeded, EngineFailure, InvalidRequest, ModelFileError, Unavailable

log = logging.getLogger(__name__)

POOLING_TYPES: dict[Pooling, int] = {
    "none": llama.LLAMA_POOLING_TYPE_NONE,
    "mean": llama.LLAMA_POOLING_TYPE_MEAN,
    "cls": llama.LLAMA_POOLING_TYPE_CLS,
    "last": llama.LLAMA_POOLING_TYPE_LAST,
    "rank": llama.LLAMA_POOLING_TYPE_RANK,
}
# Architectures this llama.cpp build gives a classification head for rank pooling (cls / cls.output
# tensors: src/models/bert.cpp, jina-bert-v2.cpp, modern-bert.cpp, neo-bert.cpp, qwen3.cpp, qwen3vl.cpp).
RANK_ARCHITECTURES = frozenset({"bert", "jina-bert-v2", "modern-bert", "neo-bert", "qwen3", "qwen3vl"})
# The longest input an embedding context takes by default: each step decodes at most this many tokens.
EMBED_BATCH_MAX = 2048
# Sequences per step: one request of 64 inputs is one decode where its tokens fit.
EMBED_SEQ_MAX = 64


@dataclass(frozen=True)
class EmbeddingConfig:
    """How a model's embedding context is shaped."""

    pooling: Pooling
    n_batch: int  # tokens per step, and the longest input
    n_threads: int
    n_seq_max: int = EMBED_SEQ_MAX
    max_queue: int = 64  # requests waiting before Unavailable


def resolve_pooling(model: LlamaModel, kind: str, configured: Pooling | None) -> Pooling:
    """The catalog's pooling, else the GGUF's, else mean (a chat model, as llama-server and Ollama do)."""
    if configured is not None:
        pooling = configured
    elif kind == "rerank":
        pooling = "rank"
    else:
        arch = model.metadata("general.architecture")
        stored = model.metadata(f"{arch}.pooling_type")
        by_number = {str(v): k for k, v in POOLING_TYPES.items()}
        pooling = by_number.get(stored, "mean") if kind == "embedding" else "mean"
        if pooling in ("none", "rank"):  # per-token vectors or a score: not an embedding of the input
            pooling = "mean"
    if pooling == "rank":
        arch = model.metadata("general.architecture")
        if arch not in RANK_ARCHITECTURES:
            raise ModelFileError(
                f"{model.path}: llama.cpp has no classification head for the {arch!r} architecture, so it "
                f"cannot rerank (rank pooling serves {', '.join(sorted(RANK_ARCHITECTURES))})"
            )
    return pooling


def create_embedding_context(model: LlamaModel, config: EmbeddingConfig) -> Any:  # llama_context_p
    """A context that pools each sequence's output: one step, one micro-batch, up to n_seq_max inputs."""
    params = llama.llama_context_default_params()
    params.n_ctx = config.n_batch
    params.n_batch = config.n_batch
    params.n_ubatch = config.n_batch
    params.n_seq_max = config.n_seq_max
    params.n_threads = config.n_threads
    params.n_threads_batch = config.n_threads
    params.embeddings = True
    params.pooling_type = POOLING_TYPES[config.pooling]
    params.kv_unified = True  # the step's inputs share the cells, whatever their lengths
    params.no_perf = True
    ctx = llama.llama_init_from_model(model.ptr, params)
    if not ctx:
        raise EngineFailure(f"{model.path}: llama.cpp could not create an embedding context of {config.n_batch}")
    return ctx


@dataclass(eq=False)  # compared by identity: its results are arrays
class EmbeddingJob:
    """One request's inputs on their way through the embedding thread."""

    inputs: list[list[int]]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[list[np.ndarray]]
    results: list[np.ndarray | None] = field(default_factory=list)
    next_input: int = 0  # the first input not yet decoded
    submitted_at: float = field(default_factory=time.monotonic)
    started_at: float | None = None
    finished_at: float | None = None

    def __post_init__(self) -> None:
        self.results = [None] * len(self.inputs)

    @property
    def cancelled(self) -> bool:
        """Whether the request stopped waiting (its client went away)."""
        return self.future.done()


class Embedder:
    """A model's embedding context and the thread that batches every request's inputs into it."""

    def __init__(
        self,
        model: LlamaModel,
        config: EmbeddingConfig,
        name: str,
        *,
        chat_busy: Callable[[], bool] = lambda: False,
    ) -> None:
        """`chat_busy`: whether the model's chat scheduler has sequences running (then use half the threads)."""
        self._model = model
        self.config = config
        self.pooling = config.pooling
        self._chat_busy = chat_busy
        self._ctx = create_embedding_context(model, config)
        self.n_batch = llama.llama_n_batch(self._ctx)
        self._memory = llama.llama_get_memory(self._ctx)
        self.n_out = llama.llama_model_n_cls_out(model.ptr) if config.pooling == "rank" else _n_embd_out(model)
        self._batch = _PooledBatch(self.n_batch)
        self._lock = threading.Condition()
        self._pending: deque[EmbeddingJob] = deque()
        self._stopping = False
        self.steps = 0  # decodes so far (tests and the bench read it)
        self._thread = threading.Thread(target=self._run, name=f"embed-{name}", daemon=True)
        self._thread.start()

    # ---- sizing, on the caller's thread -------------------------------------------------

    def tokenize(self, texts: list[str], param: str) -> list[list[int]]:
        """Each text's tokens, the model's BOS/EOS added as it asks; ContextLengthExceeded naming the index."""
        tokens = []
        for i, text in enumerate(texts):
            self._check_length(len(text.encode()) // max(1, self._model.max_token_bytes), i, param, at_least=True)
            tokens.append(self._model.tokenize(text, add_bos=True))
        self.check(tokens, param)
        return tokens

    def pair_tokens(self, query: str, documents: list[str]) -> list[list[int]]:
        """One sequence per document: BOS, query, EOS, SEP, document, EOS (those the vocabulary has)."""
        vocab = self._model.vocab
        bos = [llama.llama_vocab_bos(vocab)] if llama.llama_vocab_get_add_bos(vocab) else []
        marks = [t for t in (llama.llama_vocab_eos(vocab), llama.llama_vocab_sep(vocab)) if t >= 0]
        end = [marks[0]] if marks else []
        q = self._model.tokenize(query, add_bos=False)
        pairs = []
        for i, doc in enumerate(documents):
            self._check_length(len(q) + len(doc.encode()) // max(1, self._model.max_token_bytes), i, "documents")
            pairs.append(bos + q + marks + self._model.tokenize(doc, add_bos=False) + end)
        self.check(pairs, "documents")
        return pairs

    def check(self, inputs: list[list[int]], param: str) -> None:
        """Every input non-empty, within the vocabulary and at most n_batch tokens; else a 400 naming it."""
        for i, tokens in enumerate(inputs):
            if not tokens:
                raise InvalidRequest(f"{param}[{i}] is empty; every input needs at least one token.", param=param)
            bad = [t for t in tokens if not 0 <= t < self._model.n_vocab]
            if bad:
                raise InvalidRequest(
                    f"{param}[{i}] has token id {bad[0]}, outside this model's vocabulary "
                    f"(0..{self._model.n_vocab - 1}).",
                    param=param,
                )
            self._check_length(len(tokens), i, param)

    def _check_length(self, n: int, index: int, param: str, *, at_least: bool = False) -> None:
        if n > self.n_batch:
            size = f"at least {n}" if at_least else str(n)
            raise ContextLengthExceeded(
                f"{param}[{index}] is {size} tokens, but this model embeds at most {self.n_batch} tokens per input. "
                f"Shorten {param}[{index}] (inputs are never truncated).",
                param=param,
            )

    # ---- called from the event loop -------------------------------------------------

    async def run(self, inputs: list[list[int]]) -> tuple[list[np.ndarray], EmbeddingJob]:
        """The vectors (or scores) of `inputs`, in order, once the thread has decoded them all."""
        job = self.submit(inputs)
        try:
            return await job.future, job
        finally:
            if not job.future.done():
                job.future.cancel()  # the thread skips what is left of it

    def submit(self, inputs: list[list[int]]) -> EmbeddingJob:
        """Queue a request's inputs (checked); Unavailable when stopping or the queue is full."""
        loop = asyncio.get_running_loop()
        job = EmbeddingJob(inputs, loop, loop.create_future())
        with self._lock:
            if self._stopping:
                raise Unavailable("The server is shutting down.", retry_after=5)
            if len(self._pending) >= self.config.max_queue:
                raise Unavailable(
                    f"This model's embedding queue ({self.config.max_queue} requests) is full; retry shortly.",
                    retry_after=1,
                )
            self._pending.append(job)
            self._lock.notify()
        return job

    def load(self) -> int:
        """Requests waiting or being embedded now."""
        with self._lock:
            return len(self._pending)

    def close(self) -> None:
        """Stop the thread (requests still queued fail with Unavailable), then free the context."""
        with self._lock:
            self._stopping = True
            self._lock.notify()
        self._thread.join()
        if self._ctx:
            llama.llama_free(self._ctx)
            self._ctx = None

    # ---- the embedding thread -------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._pending and not self._stopping:
                    self._lock.wait()
                if self._stopping:
                    jobs = list(self._pending)
                    self._pending.clear()
                    for job in jobs:
                        _fail(job, Unavailable("The server is shutting down.", retry_after=5))
                    return
                rows = self._plan()
            try:
                self._step(rows)
            except Exception as exc:  # one failed decode fails its requests; the thread goes on
                log.exception("embedding step failed")
                failure = exc if isinstance(exc, EngineFailure) else EngineFailure(f"embedding failed: {exc}")
                for job in {id(job): job for job, _ in rows}.values():
                    self._drop(job)
                    _fail(job, failure)

    def _plan(self) -> list[tuple[EmbeddingJob, int]]:
        """The step's (request, input index) rows, in arrival order, within n_batch tokens and n_seq_max inputs
        (lock held). Requests whose client went away are dropped."""
        rows: list[tuple[EmbeddingJob, int]] = []
        tokens = 0
        for job in list(self._pending):
            if job.cancelled:
                self._pending.remove(job)
                continue
            i = job.next_input
            while i < len(job.inputs) and len(rows) < self.config.n_seq_max:
                n = len(job.inputs[i])
                if tokens + n > self.n_batch:
                    break
                rows.append((job, i))
                tokens += n
                i += 1
            if i < len(job.inputs):
                break  # keep arrival order: a later request waits for this one's rest
        return rows

    def _step(self, rows: list[tuple[EmbeddingJob, int]]) -> None:
        if not rows:
            return
        now = time.monotonic()
        self._batch.clear()
        for seq, (job, i) in enumerate(rows):
            job.started_at = job.started_at or now
            job.next_input = i + 1
            self._batch.add(job.inputs[i], 0, seq, logits=True)
        threads = self.config.n_threads
        if self._chat_busy():
            threads = max(1, threads // 2)
        llama.llama_set_n_threads(self._ctx, threads, threads)
        llama.llama_memory_clear(self._memory, True)
        rc = llama.llama_decode(self._ctx, self._batch.seal())
        if rc != 0:
            raise EngineFailure(f"llama_decode returned {rc} for an embedding step of {len(self._batch)} tokens")
        self.steps += 1
        done: list[EmbeddingJob] = []
        for seq, (job, i) in enumerate(rows):
            ptr = llama.llama_get_embeddings_seq(self._ctx, seq)
            if not ptr:
                raise EngineFailure("llama.cpp returned no pooled output for an embedding sequence")
            vector = np.ctypeslib.as_array(ptr, shape=(self.n_out,)).astype(np.float32, copy=True)
            job.results[i] = vector if self.pooling == "rank" else normalized(vector)
            if job.next_input == len(job.inputs) and i == len(job.inputs) - 1:
                done.append(job)
        with self._lock:
            for job in done:
                self._drop(job)
        for job in done:
            job.finished_at = time.monotonic()
            results = [r for r in job.results if r is not None]
            job.loop.call_soon_threadsafe(_resolve, job.future, results)

    def _drop(self, job: EmbeddingJob) -> None:
        """Take a finished or failed request off the queue (lock held)."""
        if job in self._pending:
            self._pending.remove(job)


class _PooledBatch(TokenBatch):
    """A batch whose every token is an output, as pooling reads them all (llama.cpp would override it, noisily)."""

    def seal(self) -> llama.llama_batch:
        """The rows, every one marked as an output."""
        struct = super().seal()
        n = struct.n_tokens
        self._logits[:n] = [1] * n
        return struct


def normalized(vector: np.ndarray) -> np.ndarray:
    """`vector` scaled to unit L2 norm (a zero vector stays zero), as OpenAI's embeddings are."""
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector


def _n_embd_out(model: LlamaModel) -> int:
    n = llama.llama_model_n_embd_out(model.ptr)
    return n if n > 0 else llama.llama_model_n_embd(model.ptr)


def _resolve(future: asyncio.Future[list[np.ndarray]], results: list[np.ndarray]) -> None:
    if not future.done():
        future.set_result(results)


def _fail(job: EmbeddingJob, exc: BaseException) -> None:
    def fail() -> None:
        if not job.future.done():
            job.future.set_exception(exc)

    job.loop.call_soon_threadsafe(fail)


def open_embedder(
    spec: ModelSpec, model: LlamaModel, *, n_threads: int, max_queue: int, chat_busy: Callable[[], bool] | None = None
) -> Embedder:
    """The embedder of a catalog model: its pooling resolved, steps as long as its longest input may be."""
    pooling = resolve_pooling(model, spec.kind, spec.pooling)
    n_batch = max(1, min(spec.n_ctx, model.n_ctx_train or spec.n_ctx, EMBED_BATCH_MAX))
    config = EmbeddingConfig(pooling, n_batch, n_threads, max_queue=max_queue)
    return Embedder(model, config, spec.id, chat_busy=chat_busy or (lambda: False))
