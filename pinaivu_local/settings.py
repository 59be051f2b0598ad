"""Server settings: built once (in the CLI) from the environment and passed down."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_data_dir() -> Path:
    """The per-user data directory: $XDG_DATA_HOME/pinaivu-local, or ~/.local/share/pinaivu-local."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "pinaivu-local"


def default_models_file() -> Path:
    """./models.toml when present, else the catalog shipped inside the package."""
    local = Path("models.toml")
    if local.is_file():
        return local.resolve()
    return Path(__file__).with_name("models.toml")


# The default of PINAIVU_STREAM_INTERVAL_MS (the bench starts our server with it too), and the longest
# interval it, a request's header and the bench accept.
STREAM_INTERVAL_MS = 20.0
MAX_STREAM_INTERVAL_MS = 1000.0


class Settings(BaseSettings):
    """Everything the server reads from its environment (prefix PINAIVU_, optional .env)."""

    # populate_by_name: code and tests may pass hf_endpoint=... where the environment says HF_ENDPOINT.
    model_config = SettingsConfigDict(env_prefix="PINAIVU_", env_file=".env", extra="ignore", populate_by_name=True)

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    data_dir: Path = Field(default_factory=default_data_dir)
    models_file: Path = Field(default_factory=default_models_file)
    api_key: SecretStr | None = None
    default_rpm: int = Field(default=600, ge=1, description="requests per minute for keys without their own")
    default_tpm: int = Field(default=1_000_000, ge=1, description="tokens per minute for keys without their own")
    # The limits' window. Always a minute in use; shorter only to test retry behaviour quickly.
    ratelimit_window_s: float = Field(default=60.0, gt=0, le=3600)
    threads: int = Field(default=0, ge=0, description="llama.cpp threads per model; 0 = all cores")
    max_queue: int = Field(default=64, ge=0, description="requests waiting per model before 503")
    weight_repack: Literal["auto", "on", "off"] = "auto"
    # A stream's new text goes out at most this often, as one chunk (its first token and its end at
    # once). Every chunk is a wake-up of the event loop and a system call: on 2 cores, where llama.cpp's
    # threads want both, one chunk per token costs a fifth of the throughput. 0: every token at once.
    stream_interval_ms: float = Field(
        default=STREAM_INTERVAL_MS,
        ge=0,
        le=MAX_STREAM_INTERVAL_MS,
        description="a stream's new text goes out at most this often",
    )
    n_gpu_layers: int | None = Field(
        default=None, ge=-1, description="overrides every model's n_gpu_layers (-1 = all, 0 = CPU only)"
    )
    # The Hugging Face and Ollama tools' own variables, read under their usual names.
    hf_endpoint: str = Field(default="https://huggingface.co", validation_alias="HF_ENDPOINT")
    hf_token: SecretStr | None = Field(default=None, validation_alias="HF_TOKEN")
    hf_hub_offline: bool = Field(default=False, validation_alias="HF_HUB_OFFLINE")
    ollama_models: Path | None = Field(default=None, validation_alias="OLLAMA_MODELS")
    test_models: bool = False
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["text", "json"] = "text"
    log_content: bool = Field(default=False, description="store prompts and outputs in the request log")
    log_retention_days: int = Field(default=30, ge=1)
    log_retention_rows: int = Field(default=100_000, ge=1)
    # A client must send a whole request head within this time, or its connection is closed.
    header_timeout_s: float = Field(default=10.0, gt=0, le=300)
    max_connections: int = Field(default=1024, ge=1, description="open sockets at once; more are refused")
    # A request's body must have arrived this long after its head, or it gets 408 and the connection closes:
    # a body dripped a byte at a time would otherwise hold its socket for as long as the client likes.
    body_timeout_s: float = Field(default=30.0, gt=0, le=3600)
    # Requests one key may have in flight at once (reading, queued or running); more get 429 at once.
    # Unset: an eighth of max_connections (at least 1), so one key never holds every socket.
    max_in_flight_per_key: int | None = Field(default=None, ge=1, description="requests in flight per key")
    # Every Redis call (the shared rate limits) is bounded by this; past it, 503 storage_unavailable.
    redis_timeout_s: float = Field(default=2.0, gt=0, le=60)
    # Every call a request makes to a Postgres server (PINAIVU_DATABASE_URL) is bounded by this: its
    # connect, each statement and lock wait (on the server), and the whole call as the request awaits it;
    # past it, 503 storage_unavailable. A request record waits for its write this long too.
    db_timeout_s: float = Field(default=5.0, gt=0, le=300)
    # Finished requests' KV cells are saved to host memory for later requests that begin the same way
    # (engine/prefix_cache.py): at most this much per model. None: as many tokens as the model's context
    # holds (the size of its KV cache); 0: none are kept.
    prompt_cache_mib: float | None = Field(
        default=None, ge=0, description="host memory per model for saved prompt prefixes, in MiB"
    )
    # "key": a cached prompt prefix is reused only by the key that sent it (another key could time
    # its first token and learn what was sent); "all": shared by every key, for a one-tenant box.
    prefix_cache_sharing: Literal["key", "all"] = "key"
    # Shared state for several gateways: keys and the request log on a Postgres server
    # (postgresql+psycopg://user@host:port/db) instead of the data dir's SQLite file, and the rate
    # limits' windows in Redis (redis://host:port/0) instead of this process.
    database_url: SecretStr | None = None
    redis_url: SecretStr | None = None
    # Traces (api/http/tracing.py): one span per inference request, with its phases, sent over OTLP/HTTP
    # to this collector (http://host:4318, or its full /v1/traces URL). None: no tracing at all.
    otlp_endpoint: str | None = Field(default=None, pattern=r"^https?://")
    # A gateway with nodes (`serve --nodes nodes.toml`): the nodes file, whether the gateway's own
    # engine serves too, how often nodes are health-checked, how long a node may take to answer.
    nodes_file: Path | None = None
    no_local: bool = False
    node_poll_s: float = Field(default=2.0, gt=0, le=60)
    # The longest a node may stay silent: to its answer's headers, and between two events of its stream
    # (SSE comments and keep-alive bytes do not count as speaking).
    node_timeout_s: float = Field(default=60.0, gt=0, le=3600)
    # The longest one request may take on one node, from sending it to the stream's end, however it talks.
    node_deadline_s: float = Field(default=900.0, gt=0, le=86400)
    log_backlog: int = Field(
        default=1000, ge=1, description="request records waiting to be written before inference is refused (503)"
    )

    @field_validator("hf_hub_offline", mode="before")
    @classmethod
    def _hf_truthy(cls, value: object) -> object:
        # huggingface_hub's reading: 1/ON/YES/TRUE in any case is on, anything else off.
        return value.strip().upper() in {"1", "ON", "YES", "TRUE"} if isinstance(value, str) else value

    @field_validator(
        "hf_token", "ollama_models", "database_url", "redis_url", "nodes_file", "otlp_endpoint", mode="before"
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    def in_flight_per_key(self) -> int:
        """Requests one key may have in flight: the setting, else an eighth of max_connections."""
        return self.max_in_flight_per_key or max(1, self.max_connections // 8)

    def effective_threads(self) -> int:
        """Threads llama.cpp uses per model."""
        return self.threads or max(1, os.cpu_count() or 1)

    @property
    def database(self) -> Path:
        """The SQLite file: keys (and later the request log)."""
        return self.data_dir / "pinaivu.db"

    @property
    def database_target(self) -> Path | str:
        """Where keys and the request log live: the Postgres URL when set, else the SQLite file."""
        return self.database_url.get_secret_value() if self.database_url else self.database

    @property
    def identity_dir(self) -> Path:
        """The node's Ed25519 signing identity (receipts/identity.py)."""
        return self.data_dir / "identity"

    @property
    def models_dir(self) -> Path:
        """Where model files without an explicit path are kept."""
        return self.data_dir / "models"
