"""One thread per model that owns the llama context and batches every running sequence.

Each step puts one decode token of every running sequence, then prompt chunks of sequences
still prefilling, into one llama_batch; one llama_decode; then samples every sequence that got
logits and hands the new text to the waiting handlers in one hop to the event loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import llama_cpp.llama_cpp as llama

from pinaivu_local.engine.batch import TokenBatch
from pinaivu_local.engine.constraints import Grammars
from pinaivu_local.engine.context import ContextConfig, create_context
from pinaivu_local.engine.gathering import GATHER_MAX_S, StepClock
from pinaivu_local.engine.generation import FinishReason
from pinaivu_local.engine.kv_state import restore_sequence, save_sequence
from pinaivu_local.engine.llama_model import LlamaModel
from pinaivu_local.engine.logprobs import TokenLogprob, token_logprob
from pinaivu_local.engine.outbox import Outbox, TextPacing
from pinaivu_local.engine.prefix_cache import MIN_REUSE, Reuse, SavedPrompt, SavedPrompts, waits_for_prefill
from pinaivu_local.engine.prepared import Constraint
from pinaivu_local.engine.sampling import SamplingParams, argmax_tokens, build_sampler, logits_row
from pinaivu_local.engine.sequence import Sequence
from pinaivu_local.engine.stream import DONE, GenerationStream, deliver
from pinaivu_local.engine.threads import tune_generation_threads
from pinaivu_local.errors import EngineFailure, Unavailable

log = logging.getLogger(__name__)


# Pause before serving again after the engine thread failed: doubles with each failure in a row.
RESTART_BACKOFF_S = (0.1, 30.0)


@dataclass(frozen=True)
class EngineHealth:
    """How the engine thread has fared: failures so far and whether it is recovering now."""

    failures: int = 0  # steps or threads that raised, since start
    restarts: int = 0  # times the thread reset itself and went on serving
    recovering: bool = False
    last_failure: str | None = None


class Scheduler:
    """Owns a model's context and batch on its own thread."""

    def __init__(
        self,
        model: LlamaModel,
        config: ContextConfig,
        name: str,
        *,
        clock: Callable[[], float] = time.monotonic,
        test_model: bool = False,
    ) -> None:
        """`clock`: what requests' text intervals are measured with (monotonic seconds); `test_model`: its
        constrained output ends each value as soon as the grammar allows (engine/closing.py)."""
        self._model = model
        self._config = config
        self._now = clock
        self._ctx = create_context(model, config)
        self.n_ctx = llama.llama_n_ctx(self._ctx)
        self._n_batch = llama.llama_n_batch(self._ctx)
        self._memory = llama.llama_get_memory(self._ctx)
        self._batch = TokenBatch(self._n_batch)
        self.generation_threads = config.n_threads  # until the engine thread has timed them
        self._lock = threading.Condition()
        self._pending: deque[Sequence] = deque()
        self._running: list[Sequence] = []
        self._free_slots = list(range(config.parallel))  # a free slot holds no cells
        # Finished sequences' cells, saved out of the cache: at most as many tokens as the cache holds.
        self._saved = SavedPrompts(self.n_ctx, config.prompt_cache_bytes)
        self._clock = StepClock()
        self._deliver = deliver  # each step's output to the requests' event loops (engine/stream.py)
        self._stopping = False
        self._health = EngineHealth()
        self._failures_in_a_row = 0
        self._name = name
        self.grammars = Grammars(model.vocab, model.n_vocab, config.n_threads, closing=test_model)
        tuned = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(tuned,), name=f"engine-{name}", daemon=True)
        self._thread.start()
        tuned.wait()

    # ---- called from the event loop -------------------------------------------------

    def submit(
        self,
        prompt: list[int],
        params: SamplingParams,
        max_tokens: int,
        cache_scope: str = "",
        constraint: Constraint | None = None,
        *,
        text_interval_s: float | None = None,
    ) -> GenerationStream:
        """Queue a request; raise Unavailable when the queue is full or the engine is down. Its new text
        is handed over at most every `text_interval_s` (None: the context's setting)."""
        loop = asyncio.get_running_loop()
        guide = self.grammars.guide(constraint) if constraint else None
        # A plain greedy request's tokens are the argmax of its logits (_decode_step): it needs no chain.
        sampler = None if params.plain_greedy else build_sampler(params, self._model.n_vocab, max_tokens)
        interval = self._config.text_interval_s if text_interval_s is None else text_interval_s
        pacing = TextPacing(interval, self._now)
        seq = Sequence(prompt, params, max_tokens, loop, Outbox(), sampler, cache_scope, guide, pacing=pacing)
        try:
            with self._lock:
                self._check_capacity()
                self._pending.append(seq)
                self._lock.notify()
        except BaseException:
            seq.free_sampler()
            raise
        return GenerationStream(seq, self.wake)

    def _check_capacity(self) -> None:
        """Unavailable while stopping, recovering from a failure, or with a full queue (lock held)."""
        if self._stopping:
            raise Unavailable("The server is shutting down.", retry_after=5)
        if self._health.recovering:
            raise Unavailable("The model's engine is restarting after a failure; retry in a moment.", retry_after=1)
        capacity = self._config.max_queue + len(self._free_slots)
        if len(self._pending) >= capacity:
            raise Unavailable(
                f"All {self._config.parallel} sequences of this model are busy and its queue "
                f"({self._config.max_queue}) is full; retry shortly.",
                retry_after=1,
            )

    @property
    def health(self) -> EngineHealth:
        """Failures so far and whether the thread is recovering from one right now."""
        return self._health

    def load(self) -> tuple[int, int]:
        """(running sequences, queued requests) right now."""
        with self._lock:
            return len(self._running), len(self._pending)

    def kv_cells(self) -> tuple[int, int]:
        """(KV cells the running sequences hold, the cells the cache has) right now: its usage for /metrics."""
        with self._lock:
            running = list(self._running)
        return sum(seq.n_cached for seq in running), self.n_ctx

    def wake(self) -> None:
        """Make the engine thread look at its queues (a request was cancelled)."""
        with self._lock:
            self._lock.notify()

    def close(self) -> None:
        """Stop the thread, fail what is left, free the context and batch."""
        with self._lock:
            self._stopping = True
            self._lock.notify()
        self._thread.join()
        shutdown = Unavailable("The server is shutting down.", retry_after=5)
        out: list[tuple[Sequence, object]] = []
        for seq in [*self._running, *self._pending]:
            self._finish(seq, shutdown, out)
            seq.free_sampler()
        self._deliver(out)
        llama.llama_free(self._ctx)
        self._ctx = None

    # ---- engine thread --------------------------------------------------------------

    def _run(self, tuned: threading.Event) -> None:
        """Serve until closed; a failure anywhere in a step resets the engine and serving goes on."""
        # Every llama_decode of this context runs on this thread, the timing of its threads included.
        # llama.cpp's OpenMP keeps a team of worker threads for each thread that has decoded; once the
        # teams hold more threads than there are cores, their workers sleep at each of a decode's
        # hundreds of barriers instead of spinning (some 230 wake-ups per token of the 1B model on 2
        # cores, and 20% longer decodes while the event loop is busy).
        try:
            self.generation_threads = tune_generation_threads(
                self._ctx, self._batch, self._config.n_threads, self._name
            )
        except Exception:
            log.exception(
                "%s: could not time one-token decodes; they use %d threads", self._name, self._config.n_threads
            )
        finally:
            tuned.set()
        while True:
            try:
                while self._step():
                    pass
                return
            except BaseException as exc:  # never die silently, never strand a request
                log.exception("engine thread failed; resetting it")
                self._recover(exc)

    def _recover(self, exc: BaseException) -> None:
        """Answer every request it holds (503, retry), empty the cache, pause, then serve again."""
        self._failures_in_a_row += 1
        with self._lock:
            self._health = dataclasses.replace(
                self._health, failures=self._health.failures + 1, recovering=True, last_failure=_describe(exc)
            )
            held = [*self._running, *self._pending]
            self._pending.clear()
        retry = Unavailable("The model's engine failed and is restarting; retry in a moment.", retry_after=1)
        out: list[tuple[Sequence, object]] = []
        for seq in held:
            out += [(seq, item) for item in seq.ending(retry)]
            seq.free_sampler()
        self._running.clear()
        self._saved = SavedPrompts(self.n_ctx, self._config.prompt_cache_bytes)
        self._free_slots = list(range(self._config.parallel))
        llama.llama_memory_clear(self._memory, True)  # cells in an unknown state: nobody reuses them
        self._deliver(out)
        low, high = RESTART_BACKOFF_S
        with self._lock:  # closing the server ends the pause at once
            self._lock.wait_for(lambda: self._stopping, timeout=min(high, low * 2 ** (self._failures_in_a_row - 1)))
            self._health = dataclasses.replace(self._health, restarts=self._health.restarts + 1, recovering=False)
        log.warning("engine of %s serving again after a failure", self._name)

    def _step(self) -> bool:
        with self._lock:
            while not self._stopping and not self._running and not self._pending:
                self._lock.wait()
            if self._stopping:
                return False
            if not self._running:
                self._gather()
            self._admit()
        out: list[tuple[Sequence, object]] = []
        self._drop_cancelled()
        try:
            if self._running:
                self._decode_step(out)
            self._failures_in_a_row = 0
        except Exception as exc:  # a bug or a llama.cpp failure: fail this step's requests, keep serving
            log.exception("engine step failed")
            with self._lock:
                self._health = dataclasses.replace(
                    self._health, failures=self._health.failures + 1, last_failure=_describe(exc)
                )
            error = EngineFailure("The engine failed while serving this request; retry it.")
            for seq in list(self._running):
                seq.n_cached = 0  # cells in an unknown state are not offered for reuse
                self._finish(seq, error, out)
        self._deliver(out)
        return True

    def _gather(self) -> None:
        """Idle, with work: wait a moment while more requests keep arriving, so that they share the first
        step (engine/gathering.py); no wait at all where steps are short. Lock held; `wait` releases it."""
        deadline = time.monotonic() + GATHER_MAX_S
        uncached: dict[int, int] = {}  # by id of a waiting sequence: each is matched against the cache once
        while not self._stopping and len(self._pending) < len(self._free_slots):
            if not self._clock.gather_window(sum(len(s.tokens) for s in self._pending)):
                return  # not worth a wait even if nothing were cached: no need to look at the cache
            for seq in self._pending:
                if id(seq) not in uncached:
                    uncached[id(seq)] = self._uncached(seq)
            window = self._clock.gather_window(sum(uncached[id(s)] for s in self._pending))
            left = deadline - time.monotonic()
            if window <= 0 or left <= 0:
                return
            arrived = len(self._pending)
            self._lock.wait(min(window, left))
            if len(self._pending) == arrived:  # nothing came within the window (or only a cancellation)
                return

    def _uncached(self, seq: Sequence) -> int:
        """The tokens of a waiting request that no saved prompt holds: what its prefill would compute."""
        reuse = self._reusable(seq)  # gathering runs only while nothing runs: the saved prompts alone
        return len(seq.tokens) - (reuse.length if reuse else 0)

    def _admit(self) -> None:
        """Move waiting requests into free slots while their tokens so far fit the cache.

        A request whose prompt begins with what a running sequence of its scope is prefilling right
        now waits for that prefill and then copies its cells, rather than computing them again.
        """
        if not self._pending:  # most steps
            return
        if any(s.cancelled for s in self._pending):  # clients gone while queued: not worth a place
            for seq in [s for s in self._pending if s.cancelled]:
                seq.free_sampler()
            self._pending = deque(s for s in self._pending if not s.cancelled)
        deferred: list[Sequence] = []
        while self._pending and self._free_slots:
            seq = self._pending[0]
            if self._waits_for_prefill(seq):
                deferred.append(self._pending.popleft())
                continue
            # Room for its tokens and one more. Later growth is met by pre-empting the youngest.
            if self._running and self._cells_in_use() + len(seq.tokens) + 1 > self.n_ctx:
                break  # FIFO: wait for room rather than let smaller requests overtake
            self._pending.popleft()
            self._place(seq)
            if seq.admitted_at is None:
                seq.admitted_at = time.monotonic()
                seq.n_reused = min(seq.n_cached, len(seq.prompt))
            self._running.append(seq)
        self._pending.extendleft(reversed(deferred))

    def _waits_for_prefill(self, seq: Sequence) -> bool:
        """Whether `seq` should wait for a running sequence's prefill of its prompt's prefix."""
        prefilling = [(s.cache_scope, s.tokens, s.n_cached) for s in self._running if s.n_cached < len(s.tokens) - 1]
        if not prefilling:
            return False
        reuse = self._reusable(seq)
        return waits_for_prefill(seq.tokens, seq.cache_scope, reuse.length if reuse else 0, prefilling)

    def _place(self, seq: Sequence) -> None:
        """Give `seq` a free slot, starting from the longest cached prefix of its tokens."""
        reuse = self._reusable(seq)
        seq.slot = self._free_slots.pop()
        seq.n_cached = self._reuse(reuse, seq.slot) if reuse else 0
        seq.suspended = None

    def _reusable(self, seq: Sequence) -> Reuse | None:
        """The longest cached prefix of `seq`'s tokens: its own cells if it was pre-empted, else a shared one."""
        if seq.suspended is not None:  # all its tokens but the last: nothing is longer
            return Reuse(len(seq.suspended.tokens), saved=seq.suspended)
        running = [(s.slot, s.cache_scope, s.tokens, s.n_cached) for s in self._running]
        return self._saved.best(seq.tokens, seq.cache_scope, running)

    def _reuse(self, reuse: Reuse, slot: int) -> int:
        """Put the cells of `reuse`'s prefix into the empty `slot`; how many tokens they hold (0: none fit)."""
        if reuse.saved is None:
            llama.llama_memory_seq_cp(self._memory, reuse.slot, slot, 0, reuse.length)
        else:
            # The whole saved prompt goes back in before its tail is cut: it needs room for all of it.
            fits = self._cells_in_use() + len(reuse.saved.tokens) <= self.n_ctx
            if not fits or not restore_sequence(self._ctx, reuse.saved.state, slot):
                llama.llama_memory_seq_rm(self._memory, slot, -1, -1)
                return 0
            llama.llama_memory_seq_rm(self._memory, slot, reuse.length, -1)
            self._saved.used(reuse.saved)
        log.debug("sequence %d reuses %d cached prompt tokens", slot, reuse.length)
        return reuse.length

    def _cells_in_use(self) -> int:
        """An upper bound of the KV cells running sequences will hold after this step."""
        return sum(len(s.tokens) for s in self._running)

    def _drop_cancelled(self) -> None:
        for seq in [s for s in self._running if s.cancelled]:
            self._release(seq)

    def _make_room(self) -> None:
        """Pre-empt the youngest sequences until every running one can grow by a token."""
        while len(self._running) > 1 and self._cells_in_use() > self.n_ctx:
            self._preempt(self._running[-1])

    def _preempt(self, seq: Sequence) -> None:
        """Save its cells out of the cache and put it first in the queue; it resumes from its tokens so far."""
        log.debug("pre-empting sequence %d (%d tokens): the cache is full", seq.slot, len(seq.tokens))
        self._running.remove(seq)
        seq.suspended = self._vacate(seq)
        seq.n_cached = 0
        with self._lock:
            self._pending.appendleft(seq)

    def _decode_step(self, out: list[tuple[Sequence, object]]) -> None:
        self._make_room()
        budget = self._n_batch
        while True:
            batch, plan = self._fill_batch(budget)
            started = time.perf_counter()
            rc = llama.llama_decode(self._ctx, batch)
            if rc == 0:
                self._clock.observe(batch.n_tokens, time.perf_counter() - started)
                break
            if rc == 1 and budget > len(self._running):
                budget //= 2  # no KV slot for this many prompt tokens: try a smaller chunk
                continue
            if rc == 1 and len(self._running) > 1:
                self._preempt(self._running[-1])
                continue
            error = EngineFailure(f"llama_decode failed (status {rc}) while serving this request; retry it.")
            for seq, _, _ in plan:
                seq.n_cached = 0  # its cells are in an unknown state: do not let anyone reuse them
                self._finish(seq, error, out)
            return
        sampled = []
        for seq, logits_index, chunk in plan:
            seq.n_cached += chunk
            if logits_index >= 0:
                sampled.append((seq, logits_index))
        # Masks of the whole step at once (in parallel), written into the logits before any sampler runs.
        self.grammars.mask(self._ctx, [(seq.guide, index) for seq, index in sampled if seq.guide])
        greedy = iter(
            argmax_tokens(self._ctx, [i for seq, i in sampled if seq.params.plain_greedy], self._model.n_vocab)
        )
        for seq, logits_index in sampled:
            if seq.params.plain_greedy:
                token = next(greedy)
            else:
                token = llama.llama_sampler_sample(seq.sampler, self._ctx, logits_index)
            self._sample(seq, logits_index, token, out)

    def _fill_batch(self, budget: int) -> tuple[llama.llama_batch, list[tuple[Sequence, int, int]]]:
        """This step's batch, and (sequence, logits index, tokens fed) for each sequence in it.

        Generating sequences come first (one token each), then prompt chunks of the others.
        """
        batch = self._batch
        batch.clear()
        plan: list[tuple[Sequence, int, int]] = []
        generating = [s for s in self._running if len(s.tokens) - s.n_cached == 1]
        prefilling = [s for s in self._running if len(s.tokens) - s.n_cached > 1]
        for seq in generating + prefilling:
            start = seq.n_cached
            chunk = min(len(seq.tokens) - start, budget - len(batch))
            if chunk <= 0:
                break
            reaches_end = start + chunk == len(seq.tokens)
            index = batch.add(seq.tokens[start : start + chunk], start, seq.slot, logits=reaches_end)
            plan.append((seq, index, chunk))
        return batch.seal(), plan

    def _sample(self, seq: Sequence, index: int, token: int, out: list[tuple[Sequence, object]]) -> None:
        """Take the token sampled for `seq` (at batch output `index`): its text, stops, end, logprobs."""
        if seq.guide:
            seq.guide.accept(token)
        if seq.first_token_at is None:
            seq.first_token_at = time.monotonic()
        if self._model.is_eog(token) and not seq.params.ignore_eos:
            self._complete(seq, "stop", seq.drain(), out)
            return
        seq.n_generated += 1
        seq.tokens.append(token)
        decoded = seq.text.push(self._model.piece(token))
        if seq.trail is not None:
            seq.trail.add(self._logprob(seq, index, token), len(decoded), seq.text.unfinished)
        text, hit_stop = seq.stops.push(decoded)
        if hit_stop:
            self._complete(seq, "stop", text, out)
        elif seq.guide and seq.guide.finished:  # the grammar is complete and allows nothing more
            self._complete(seq, "stop", text + seq.drain(), out)
        elif seq.n_generated >= seq.max_tokens:
            self._complete(seq, "length", text + seq.drain(), out)
        elif text and (delta := seq.new_text(text)) is not None:
            out.append((seq, delta))

    def _logprob(self, seq: Sequence, index: int, token: int) -> TokenLogprob:
        """`token`'s entry, from the logits the sampler saw (with the request's logit_bias)."""
        assert seq.trail is not None
        row = logits_row(self._ctx, index, self._model.n_vocab)
        return token_logprob(row, seq.params.logit_bias, token, seq.trail.n_top, self._model.shape)

    def _complete(self, seq: Sequence, reason: FinishReason, text: str, out: list[tuple[Sequence, object]]) -> None:
        out.append((seq, seq.last_delta(reason, text)))
        self._finish(seq, DONE, out)

    def _finish(self, seq: Sequence, last: object, out: list[tuple[Sequence, object]]) -> None:
        """Send `last` (the end marker or an error) and free the sequence's slot and KV cells."""
        out += [(seq, item) for item in seq.ending(last)]
        if seq in self._running:
            self._release(seq)

    def _release(self, seq: Sequence) -> None:
        """Free a finished or cancelled sequence's slot and sampler; its cells are saved for reuse."""
        self._running.remove(seq)
        # Shutting down: nobody will reuse them (on a GPU each copy crosses to host memory).
        saved = self._vacate(seq, save=self._saved.keeps_any and not self._stopping)
        if saved is not None:
            self._saved.add(saved)
        seq.free_sampler()

    def _vacate(self, seq: Sequence, *, save: bool = True) -> SavedPrompt | None:
        """Empty the sequence's slot and free it; a copy of its cells, if asked and worth reusing."""
        saved = None
        if save and seq.n_cached >= MIN_REUSE:
            state = save_sequence(self._ctx, seq.slot)
            if state is not None:
                saved = SavedPrompt(seq.tokens[: seq.n_cached], seq.cache_scope, state)
        llama.llama_memory_seq_rm(self._memory, seq.slot, -1, -1)
        self._free_slots.append(seq.slot)
        return saved


def _describe(exc: BaseException) -> str:
    """One line for /health: the exception's class and message."""
    return f"{exc.__class__.__name__}: {exc}"
