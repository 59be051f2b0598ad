"""The server's long-lived services: opened once in the lifespan, closed in reverse, typed."""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Iterator
from dataclasses import dataclass

from litestar import Litestar
from litestar.datastructures import State
from opentelemetry.trace import Tracer

from pinaivu_local.api.flow.backends import Backend, FleetBackend, LocalBackend
from pinaivu_local.api.flow.embedding import Embeddings
from pinaivu_local.api.flow.inference import Inference
from pinaivu_local.api.flow.metrics import Metrics
from pinaivu_local.api.http.app_state import state_services
from pinaivu_local.api.http.auth import KeyAuthenticator
from pinaivu_local.api.http.in_flight import InFlight
from pinaivu_local.api.http.tracing import open_tracer
from pinaivu_local.api.openai.replay import Replayer
from pinaivu_local.api.responses.store import ResponseStore
from pinaivu_local.api.routes.models import model_object
from pinaivu_local.catalog import Catalog
from pinaivu_local.engine.host.devices import supports_gpu_offload
from pinaivu_local.engine.host.repack import decide_repack
from pinaivu_local.engine.model_pool import EngineOptions, ModelPool
from pinaivu_local.errors import ConfigError, StorageUnavailable
from pinaivu_local.fleet.fleet import Fleet
from pinaivu_local.fleet.nodes import load_nodes
from pinaivu_local.fleet.pins import NodePins
from pinaivu_local.fleet.state import ModelLoad
from pinaivu_local.keys.store import KeyStore
from pinaivu_local.keys.usage import KeyUsage
from pinaivu_local.ratelimit.limits import Limiter, Limits
from pinaivu_local.ratelimit.redis_window import RedisRateLimiter
from pinaivu_local.ratelimit.window import RateLimiter
from pinaivu_local.receipts.identity import NodeIdentity, load_or_create
from pinaivu_local.requestlog.log import RequestLog, Retention
from pinaivu_local.requestlog.model_hashes import ModelHashes
from pinaivu_local.settings import Settings
from pinaivu_local.storage.database import Database

log = logging.getLogger(__name__)

# The application state's one entry, set by the lifespan.


@dataclass(frozen=True)
class Services:
    """Everything handlers, guards and middleware use; each reaches a handler as a typed dependency."""

    settings: Settings
    catalog: Catalog
    pool: ModelPool
    key_store: KeyStore
    authenticator: KeyAuthenticator
    limiter: Limiter
    in_flight: InFlight
    request_log: RequestLog
    model_hashes: ModelHashes
    metrics: Metrics
    identity: NodeIdentity
    inference: Inference
    replayer: Replayer
    embeddings: Embeddings
    responses: ResponseStore  # stored responses of POST /v1/responses
    fleet: Fleet | None = None  # a gateway with nodes (serve --nodes)
    tracer: Tracer | None = None  # spans of inference requests (PINAIVU_OTLP_ENDPOINT); None: no tracing


@contextlib.contextmanager
def open_services(settings: Settings, catalog: Catalog) -> Iterator[Services]:
    """Open the database, request log and models; everything is closed in reverse, also on errors."""
    with contextlib.ExitStack() as resources:
        identity = load_or_create(settings.identity_dir)
        # Opened first, shut down last: the spans of the last requests are sent after they have ended.
        tracer = resources.enter_context(open_tracer(settings))
        database = Database(settings.database_target, timeout_s=settings.db_timeout_s)
        resources.callback(database.close)
        key_usage = KeyUsage()  # keys' last use: noted by authentication, written by the request log
        key_store = KeyStore(database, key_usage)
        hashes = ModelHashes(settings.data_dir / "model-hashes.json")
        retention = Retention(days=settings.log_retention_days, rows=settings.log_retention_rows)
        request_log = RequestLog(database, retention, backlog=settings.log_backlog, key_usage=key_usage)
        resources.callback(request_log.close)
        if settings.no_local:
            catalog = Catalog(catalog.file, ())  # a pure gateway: no model of its own
        pool = ModelPool(catalog, _engine_options(settings, catalog))
        resources.callback(pool.close)  # first to run: streams end, their records are still written
        pool.open()
        hashes.start([spec.file for spec in catalog.models if spec.id in pool.ready_ids()])
        metrics = Metrics()
        metrics.watch_models(pool.statuses)
        limiter = _open_limiter(settings)
        fleet = _fleet(settings, pool, hashes, NodePins(database))
        backend: Backend = FleetBackend(fleet, pool, hashes) if fleet else LocalBackend(pool, hashes)
        inference = Inference(
            backend,
            limiter,
            request_log,
            metrics,
            identity,
            log_content=settings.log_content,
            share_prefixes=settings.prefix_cache_sharing == "all",
        )
        yield Services(
            settings=settings,
            catalog=catalog,
            pool=pool,
            key_store=key_store,
            authenticator=KeyAuthenticator(key_store, Limits(rpm=settings.default_rpm, tpm=settings.default_tpm)),
            limiter=limiter,
            in_flight=InFlight(settings.in_flight_per_key()),
            request_log=request_log,
            model_hashes=hashes,
            metrics=metrics,
            identity=identity,
            inference=inference,
            replayer=Replayer(pool, hashes, inference, fleet=fleet is not None),
            embeddings=Embeddings(
                pool,
                hashes,
                limiter,
                request_log,
                metrics,
                identity,
                log_content=settings.log_content,
                fleet=fleet,
            ),
            responses=ResponseStore(database, retention),
            fleet=fleet,
            tracer=tracer,
        )


def services_of(app: Litestar) -> Services:
    """The services of a running app, for guards and middleware (handlers get them as dependencies)."""
    return services_in(app.state)


def services_in(state: State) -> Services:
    """The services the lifespan put in the app's state, the one thing it puts there."""
    services = state_services(state)
    if not isinstance(services, Services):
        raise RuntimeError("the app's lifespan has not opened its services")
    return services


def _fleet(settings: Settings, pool: ModelPool, hashes: ModelHashes, pins: NodePins) -> Fleet | None:
    """The nodes of a gateway (serve --nodes), the gateway's own engine among them unless --no-local."""
    if settings.nodes_file is None:
        return None
    return Fleet(
        load_nodes(settings.nodes_file),
        local_models=None if settings.no_local else functools.partial(_local_loads, pool),
        local_hash=functools.partial(_local_hash, pool, hashes),
        poll_s=settings.node_poll_s,
        timeout_s=settings.node_timeout_s,
        deadline_s=settings.node_deadline_s,
        pins=pins,
    )


def _local_hash(pool: ModelPool, hashes: ModelHashes, model: str) -> str | None:
    """The SHA-256 of the gateway's own file of `model`, once hashed."""
    return hashes.get(pool.get(model).spec.file)


def _local_loads(pool: ModelPool) -> dict[str, ModelLoad]:
    """The gateway's own ready models as a node's, with their live load."""
    return {
        status.id: ModelLoad(model_object(pool.get(status.id)), status.slots, status.running, status.queued)
        for status in pool.statuses()
        if status.state == "ready"
    }


def _open_limiter(settings: Settings) -> Limiter:
    """The rate limiter: in this process, or in Redis (PINAIVU_REDIS_URL) to share limits across gateways.

    Closed by the app's lifespan, on the event loop its Redis connections belong to.
    """
    if settings.redis_url is None:
        return RateLimiter(window_s=settings.ratelimit_window_s)
    limiter = RedisRateLimiter(
        settings.redis_url.get_secret_value(), window_s=settings.ratelimit_window_s, timeout_s=settings.redis_timeout_s
    )
    try:
        limiter.ping()
    except StorageUnavailable:
        raise ConfigError("PINAIVU_REDIS_URL: Redis does not answer; start it or fix the URL") from None
    return limiter


def _engine_options(settings: Settings, catalog: Catalog) -> EngineOptions:
    """Threads, queue, repacking, GPU offload and saved prompts' memory, decided once for every model."""
    repack = decide_repack(settings.weight_repack, settings.data_dir)
    offload = supports_gpu_offload()
    _warn_without_offload(settings, catalog, offload)
    return EngineOptions(
        settings.effective_threads(),
        settings.max_queue,
        repack,
        offload,
        settings.n_gpu_layers,
        text_interval_s=settings.stream_interval_ms / 1000,
        prompt_cache_bytes=None if settings.prompt_cache_mib is None else int(settings.prompt_cache_mib * 2**20),
    )


def _warn_without_offload(settings: Settings, catalog: Catalog, offload: bool) -> None:
    """One line, not an error, when GPU layers are asked of a build that cannot offload."""
    override = settings.n_gpu_layers
    wanted = [override if override is not None else m.n_gpu_layers for m in catalog.models]
    if not offload and any(wanted):
        log.warning(
            "this llama.cpp build has no GPU offload: models run on the CPU (rebuild with `make install GPU=cuda` "
            "or `GPU=metal` to use a GPU; PINAIVU_N_GPU_LAYERS=0 silences this)"
        )
