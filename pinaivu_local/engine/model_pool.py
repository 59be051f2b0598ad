"""Every catalog model, loaded side by side: ready ones serve, the others explain why not."""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import llama_cpp.llama_cpp as llama

from pinaivu_local.catalog import Catalog, ModelSpec
from pinaivu_local.engine.constraints import MaskStats
from pinaivu_local.engine.context import ContextConfig
from pinaivu_local.engine.embedding import Embedder, open_embedder
from pinaivu_local.engine.host.devices import gpu_layers
from pinaivu_local.engine.host.llama_log import LlamaLog
from pinaivu_local.engine.llama_model import LlamaModel, LoadOptions
from pinaivu_local.engine.prepared import (
    ChatPrompt,
    Constraint,
    PreparedRequest,
    PromptSource,
    TextPrompt,
    text_bytes,
)
from pinaivu_local.engine.sampling import SamplingParams
from pinaivu_local.engine.scheduler import Scheduler
from pinaivu_local.engine.scripted_turns import scripted_turn
from pinaivu_local.engine.stream import GenerationStream
from pinaivu_local.errors import ContextLengthExceeded, InvalidRequest, ModelFileError, ModelNotFound, PinaivuError
from pinaivu_local.sizes import human_bytes
from pinaivu_local.suggest import suggest

log = logging.getLogger(__name__)

ModelState = Literal["ready", "recovering", "missing", "failed"]


@dataclass(frozen=True)
class ModelStatus:
    """What /health and `models list` say about one catalog model."""

    id: str
    state: ModelState
    file: str
    test_model: bool
    detail: str | None = None
    fetch_command: str | None = None
    slots: int = 0
    running: int = 0
    queued: int = 0
    failures: int = 0  # engine steps or threads that failed since start
    restarts: int = 0  # times the engine reset itself after a failure
    last_failure: str | None = None
    kv_cells_used: int = 0  # KV cells the running sequences hold
    kv_cells: int = 0  # the KV cache's cells (its context); 0 where the model has none (not loaded, embeddings)


@dataclass(frozen=True)
class EngineOptions:
    """Engine-wide settings, resolved once at start-up."""

    n_threads: int
    max_queue: int
    weight_repack: bool
    gpu_offload: bool = False
    n_gpu_layers: int | None = None  # overrides every model's own setting when set
    text_interval_s: float = 0.0  # a request's new text is handed over at most this often
    prompt_cache_bytes: int | None = None  # host memory per model for saved prompts (None: its KV cache's size)

    def gpu_layers(self, spec: ModelSpec) -> int:
        """Layers to offload for `spec`: the override or the catalog's, and 0 where the build cannot."""
        return gpu_layers(self.n_gpu_layers if self.n_gpu_layers is not None else spec.n_gpu_layers, self.gpu_offload)


class ModelEngine:
    """A ready model: weights, chat template and the scheduler that serves it (none for an embedding or
    rerank model), and its embedder (engine/embedding.py: made on first use for a chat model)."""

    def __init__(
        self,
        spec: ModelSpec,
        model: LlamaModel,
        scheduler: Scheduler | None,
        embedder: Embedder | Callable[[], Embedder] | None = None,
    ) -> None:
        self.spec = spec
        self.id = spec.id
        self._model = model
        self._scheduler = scheduler
        self._embedder = embedder if isinstance(embedder, Embedder) else None
        self._make_embedder = None if isinstance(embedder, Embedder) else embedder
        self._embedder_lock = threading.Lock()
        if scheduler is None and self._embedder is None:
            raise ValueError("a model serves chat, embeddings or both")
        self.n_ctx = scheduler.n_ctx if scheduler is not None else self.embedder().n_batch

    def embeds_with(self, make: Callable[[], Embedder]) -> None:
        """A chat model's embedder, made by `make` on first use."""
        self._make_embedder = make

    def chat_busy(self) -> bool:
        """Whether its scheduler has sequences running now (its embedder then takes half the threads)."""
        return self._scheduler is not None and self._scheduler.load()[0] > 0

    def embedder(self) -> Embedder:
        """Its embedding context and thread (created on the first call for a chat model: call it off the
        event loop); InvalidRequest for a model that has none."""
        with self._embedder_lock:
            if self._embedder is None:
                if self._make_embedder is None:
                    raise InvalidRequest(f"`{self.id}` does not serve embeddings.", param="model")
                self._embedder = self._make_embedder()
            return self._embedder

    @property
    def chat(self) -> Scheduler:
        """The scheduler of a model that completes text; InvalidRequest naming what the model serves instead."""
        if self._scheduler is None:
            endpoint = "/v1/rerank" if self.spec.kind == "rerank" else "/v1/embeddings"
            raise InvalidRequest(
                f"`{self.id}` is {'a rerank' if self.spec.kind == 'rerank' else 'an embedding'} model: it serves "
                f"{endpoint}, not completions. Use a chat model from GET /v1/models.",
                param="model",
            )
        return self._scheduler

    def prepare(
        self,
        source: PromptSource,
        sampling: SamplingParams,
        requested: int | None,
        *,
        cache_scope: str = "",
        constraint: Constraint | None = None,
    ) -> PreparedRequest:
        """Tokens, budget, sampling and constraint checked against this model: the one place a request is sized.

        InvalidRequest for token ids outside the vocabulary or a grammar that cannot be compiled,
        ContextLengthExceeded when it cannot fit.
        """
        scheduler = self.chat
        if self.spec.test_model:
            constraint = scripted_turn(constraint, source)
        if constraint is not None:
            scheduler.grammars.check(constraint)  # compiled here, off the event loop, and cached
        self._check_tokens(list(sampling.logit_bias), "logit_bias")
        param = "messages" if isinstance(source, ChatPrompt) else "prompt"
        # No token is longer than max_token_bytes: a text that cannot fit even so is refused
        # before it is tokenized (megabytes of it would keep a thread busy for nothing).
        self._budget(-(-text_bytes(source) // self._model.max_token_bytes), requested, param, at_least=True)
        prompt = self._tokens(source, requested, param)
        budget = self._budget(len(prompt), requested, param)
        return PreparedRequest(self.id, prompt, budget, sampling, cache_scope, constraint)

    def start(self, prepared: PreparedRequest, *, text_interval_s: float | None = None) -> GenerationStream:
        """Queue a prepared request; raises Unavailable when the model cannot take it now. Its new text
        is handed over at most every `text_interval_s` (None: the engine's setting)."""
        if prepared.model_id != self.id:
            raise ValueError(f"a request prepared for {prepared.model_id} cannot run on {self.id}")
        return self.chat.submit(
            prepared.prompt,
            prepared.sampling,
            prepared.max_tokens,
            prepared.cache_scope,
            prepared.constraint,
            text_interval_s=text_interval_s,
        )

    @property
    def mask_stats(self) -> MaskStats:
        """Time constrained decoding has spent on token masks so far (for the bench)."""
        return self.chat.grammars.stats

    def _tokens(self, source: PromptSource, requested: int | None, param: str) -> list[int]:
        if isinstance(source, ChatPrompt):
            parts = self._model.chat_template.render_parts(source.messages, source.tools)
            # Checked again as rendered, before tokenizing: a template may write client data at more than
            # its own size (tools indented per level). Only the client's text: a control token's markup
            # is one token however long its name.
            client = sum(len(part.text.encode()) for part in parts if not part.markup)
            self._budget(-(-client // self._model.max_token_bytes), requested, param, at_least=True)
            # The template writes <|begin_of_text|> itself, so no BOS is added here.
            return self._model.tokenize_prompt(parts)
        if isinstance(source, TextPrompt):
            return self._model.tokenize(source.text, add_bos=True)
        self._check_tokens(source.tokens, "prompt")
        return list(source.tokens)

    def _check_tokens(self, tokens: list[int], param: str) -> None:
        bad = [t for t in tokens if not 0 <= t < self._model.n_vocab]
        if bad:
            raise InvalidRequest(
                f"{param} has token id {bad[0]}, outside this model's vocabulary (0..{self._model.n_vocab - 1}).",
                param=param,
            )

    def _budget(self, n_prompt: int, requested: int | None, param: str, *, at_least: bool = False) -> int:
        """Tokens the completion may take; ContextLengthExceeded when they do not fit.

        `at_least`: n_prompt is a lower bound of the prompt's tokens, and the message says so.
        """
        prompt = f"at least {n_prompt}" if at_least else str(n_prompt)
        if requested is None:
            if n_prompt >= self.n_ctx:
                raise ContextLengthExceeded(
                    f"This model's maximum context length is {self.n_ctx} tokens, but your prompt is "
                    f"{prompt} tokens. Shorten the {param}.",
                    param=param,
                )
            return self.n_ctx - n_prompt
        if n_prompt + requested > self.n_ctx:
            total = f"at least {n_prompt + requested}" if at_least else str(n_prompt + requested)
            raise ContextLengthExceeded(
                f"This model's maximum context length is {self.n_ctx} tokens. However, you requested "
                f"{total} tokens ({prompt} in the {param}, {requested} for the completion). "
                f"Please reduce the length of the {param} or the completion's max_tokens.",
                param=param,
            )
        return requested

    def status(self) -> ModelStatus:
        """Ready, with its current load."""
        if self._scheduler is None:
            return ModelStatus(
                id=self.id,
                state="ready",
                file=str(self.spec.file),
                test_model=self.spec.test_model,
                detail=self._model.describe(),
                slots=self.spec.parallel,
                running=self.embedder().load(),
            )
        running, queued = self._scheduler.load()
        used, cells = self._scheduler.kv_cells()
        health = self._scheduler.health
        return ModelStatus(
            id=self.id,
            state="recovering" if health.recovering else "ready",
            file=str(self.spec.file),
            test_model=self.spec.test_model,
            detail=f"restarting after: {health.last_failure}" if health.recovering else self._model.describe(),
            slots=self.spec.parallel,
            running=running,
            queued=queued,
            failures=health.failures,
            restarts=health.restarts,
            last_failure=health.last_failure,
            kv_cells_used=used,
            kv_cells=cells,
        )

    def close(self) -> None:
        """Stop the scheduler and the embedder, then free the weights."""
        if self._scheduler is not None:
            self._scheduler.close()
        if self._embedder is not None:
            self._embedder.close()
        self._model.close()


class ModelPool:
    """Opens every model of a catalog; `get` resolves a request's model id."""

    def __init__(self, catalog: Catalog, options: EngineOptions) -> None:
        self._catalog = catalog
        self._options = options
        self._engines: dict[str, ModelEngine] = {}
        self._unavailable: dict[str, ModelStatus] = {}
        self._log: LlamaLog | None = None

    def open(self) -> None:
        """Load every model whose file is usable; record why the others are not."""
        llama.llama_backend_init()
        self._log = LlamaLog()
        for spec in self._catalog.models:
            try:
                self._engines[spec.id] = self._load(spec)
            except PinaivuError as exc:
                self._unavailable[spec.id] = self._unavailable_status(spec, exc)
                log.debug("%s unavailable: %s", spec.id, exc.message)  # report_models says it once

    def _load(self, spec: ModelSpec) -> ModelEngine:
        n_gpu_layers = self._options.gpu_layers(spec)
        model = LlamaModel(spec.file, LoadOptions(n_gpu_layers, self._options.weight_repack))
        embed = functools.partial(open_embedder, spec, model, n_threads=self._options.n_threads)
        if spec.kind != "chat":  # an embedding or rerank model: no chat context, its embedder at once
            try:
                engine = ModelEngine(spec, model, None, embed(max_queue=self._options.max_queue))
            except BaseException:
                model.close()
                raise
            log.info("%s loaded (%s): %s, %s", spec.id, spec.kind, model.describe(), human_bytes(model.size_bytes))
            return engine
        try:
            config = ContextConfig(
                n_ctx=spec.n_ctx,
                parallel=spec.parallel,
                n_threads=self._options.n_threads,
                max_queue=self._options.max_queue,
                text_interval_s=self._options.text_interval_s,
                prompt_cache_bytes=self._options.prompt_cache_bytes,
            )
            engine = ModelEngine(spec, model, Scheduler(model, config, spec.id, test_model=spec.test_model))
            engine.embeds_with(functools.partial(embed, max_queue=self._options.max_queue, chat_busy=engine.chat_busy))
        except BaseException:
            model.close()
            raise
        log.info(
            "%s loaded: %s; weights %s + KV cache %s (context %d), %s",
            spec.id,
            model.describe(),
            human_bytes(model.size_bytes),
            human_bytes(model.kv_cache_bytes(engine.n_ctx)),
            engine.n_ctx,
            _placement(n_gpu_layers, model.n_layer),
        )
        return engine

    def _unavailable_status(self, spec: ModelSpec, exc: PinaivuError) -> ModelStatus:
        missing = not spec.file.exists()
        detail = exc.message
        if isinstance(exc, ModelFileError) and not missing and self._log and self._log.last_error():
            detail = f"{detail}: {self._log.last_error()}"
        return ModelStatus(
            id=spec.id,
            state="missing" if missing else "failed",
            file=str(spec.file),
            test_model=spec.test_model,
            detail=detail,
            fetch_command=spec.fetch_command() if missing else None,
        )

    def ready_ids(self) -> list[str]:
        """Ids of the models that serve requests, in catalog order."""
        return [m.id for m in self._catalog.models if m.id in self._engines]

    def statuses(self) -> list[ModelStatus]:
        """Every catalog model, ready or not."""
        return [
            self._engines[m.id].status() if m.id in self._engines else self._unavailable[m.id]
            for m in self._catalog.models
        ]

    def get(self, model_id: str) -> ModelEngine:
        """The engine of a ready model, or ModelNotFound with a message that helps."""
        engine = self._engines.get(model_id)
        if engine is not None:
            return engine
        raise ModelNotFound(self._not_found_message(model_id), param="model")

    def _not_found_message(self, model_id: str) -> str:
        active = self.ready_ids()
        listed = ", ".join(active) if active else "none"
        if model_id in self._unavailable:
            status = self._unavailable[model_id]
            how = f" Fetch it with: {status.fetch_command}" if status.fetch_command else ""
            return (
                f"The model `{model_id}` is not active on this server ({status.detail}).{how} Active models: {listed}."
            )
        hint = suggest(model_id, active)
        did_you_mean = f" Did you mean `{hint}`?" if hint else ""
        return (
            f"The model `{model_id}` does not exist or is not active.{did_you_mean} Active models: {listed}. "
            "Use an id from GET /v1/models verbatim."
        )

    def close(self) -> None:
        """Stop every engine and free every model."""
        for engine in self._engines.values():
            engine.close()
        self._engines.clear()
        if self._log:
            self._log.uninstall()
            self._log = None
        llama.llama_backend_free()


def _placement(n_gpu_layers: int, n_layer: int) -> str:
    if n_gpu_layers == 0:
        return "on the CPU"
    on_gpu = n_layer if n_gpu_layers < 0 else min(n_gpu_layers, n_layer)
    return f"{on_gpu} of {n_layer} layers on the GPU"
