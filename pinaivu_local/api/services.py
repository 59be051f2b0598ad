"""The server's long-lived services: opened once in the lifespan, closed in reverse, typed."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass

from litestar import Litestar
from litestar.datastructures import State

from pinaivu_local.api.auth import KeyAuthenticator
from pinaivu_local.api.inference import Inference
from pinaivu_local.api.metrics import Metrics
from pinaivu_local.api.replay import Replayer
from pinaivu_local.catalog import Catalog
from pinaivu_local.engine.devices import supports_gpu_offload
from pinaivu_local.engine.model_pool import EngineOptions, ModelPool
from pinaivu_local.engine.repack import decide_repack
from pinaivu_local.keys.store import KeyStore
from pinaivu_local.keys.usage import KeyUsage
from pinaivu_local.ratelimit import Limits, RateLimiter
from pinaivu_local.receipts.identity import NodeIdentity, load_or_create
from pinaivu_local.requestlog.log import RequestLog, Retention
from pinaivu_local.requestlog.model_hashes import ModelHashes
from pinaivu_local.settings import Settings
from pinaivu_local.storage.database import Database

log = logging.getLogger(__name__)

# The application state's one entry, set by the lifespan.
STATE_KEY = "services"


@dataclass(frozen=True)
class Services:
    """Everything handlers, guards and middleware use; each reaches a handler as a typed dependency."""

    settings: Settings
    catalog: Catalog
    pool: ModelPool
    key_store: KeyStore
    authenticator: KeyAuthenticator
    limiter: RateLimiter
    request_log: RequestLog
    model_hashes: ModelHashes
    metrics: Metrics
    identity: NodeIdentity
    inference: Inference
    replayer: Replayer


@contextlib.contextmanager
def open_services(settings: Settings, catalog: Catalog) -> Iterator[Services]:
    """Open the database, request log and models; everything is closed in reverse, also on errors."""
    with contextlib.ExitStack() as resources:
        identity = load_or_create(settings.identity_dir)
        database = Database(settings.database)
        resources.callback(database.close)
        key_usage = KeyUsage()  # keys' last use: noted by authentication, written by the request log
        key_store = KeyStore(database, key_usage)
        hashes = ModelHashes(settings.data_dir / "model-hashes.json")
        retention = Retention(days=settings.log_retention_days, rows=settings.log_retention_rows)
        request_log = RequestLog(database, retention, hashes.get, backlog=settings.log_backlog, key_usage=key_usage)
        resources.callback(request_log.close)
        pool = ModelPool(catalog, _engine_options(settings, catalog))
        resources.callback(pool.close)  # first to run: streams end, their records are still written
        pool.open()
        hashes.start([spec.file for spec in catalog.models if spec.id in pool.ready_ids()])
        metrics = Metrics()
        metrics.watch_models(pool.statuses)
        limiter = RateLimiter(window_s=settings.ratelimit_window_s)
        inference = Inference(
            pool,
            limiter,
            request_log,
            metrics,
            hashes,
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
            request_log=request_log,
            model_hashes=hashes,
            metrics=metrics,
            identity=identity,
            inference=inference,
            replayer=Replayer(pool, hashes, inference),
        )


def services_of(app: Litestar) -> Services:
    """The services of a running app, for guards and middleware (handlers get them as dependencies)."""
    return services_in(app.state)


def services_in(state: State) -> Services:
    """The services the lifespan put in the app's state, the one thing it puts there."""
    services = state.get(STATE_KEY)
    if not isinstance(services, Services):
        raise RuntimeError("the app's lifespan has not opened its services")
    return services


def _engine_options(settings: Settings, catalog: Catalog) -> EngineOptions:
    """Threads, queue, repacking and GPU offload, decided once for every model."""
    repack = decide_repack(settings.weight_repack, settings.data_dir)
    offload = supports_gpu_offload()
    _warn_without_offload(settings, catalog, offload)
    return EngineOptions(settings.effective_threads(), settings.max_queue, repack, offload, settings.n_gpu_layers)


def _warn_without_offload(settings: Settings, catalog: Catalog, offload: bool) -> None:
    """One line, not an error, when GPU layers are asked of a build that cannot offload."""
    override = settings.n_gpu_layers
    wanted = [override if override is not None else m.n_gpu_layers for m in catalog.models]
    if not offload and any(wanted):
        log.warning(
            "this llama.cpp build has no GPU offload: models run on the CPU (rebuild with `make install GPU=cuda` "
            "or `GPU=metal` to use a GPU; PINAIVU_N_GPU_LAYERS=0 silences this)"
        )
