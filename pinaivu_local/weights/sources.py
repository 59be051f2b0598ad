"""A catalog `source` string parsed into where the weights come from."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from pinaivu_local.errors import ConfigError

OLLAMA_REGISTRY = "registry.ollama.ai"


@dataclass(frozen=True)
class HFSource:
    """`hf://owner/repo/path/in/repo.gguf`: a file of a Hugging Face model repository (main branch)."""

    owner: str
    repo: str
    path: str

    def url(self, endpoint: str) -> str:
        """The download URL under a Hub endpoint (https://huggingface.co or HF_ENDPOINT)."""
        return f"{endpoint.rstrip('/')}/{self.owner}/{self.repo}/resolve/main/{quote(self.path)}"

    def file_name(self) -> str:
        """The name the file is kept under in the data dir."""
        return self.path.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class URLSource:
    """`https://...`: a plain download."""

    url: str

    def file_name(self) -> str:
        """The last path segment of the URL."""
        return urlsplit(self.url).path.rstrip("/").rsplit("/", 1)[-1]


@dataclass(frozen=True)
class OllamaSource:
    """`ollama://llama3.2:1b`: a model in a local Ollama store, never downloaded by us."""

    host: str
    namespace: str
    name: str
    tag: str

    def ref(self) -> str:
        """The name `ollama pull` takes."""
        prefix = "" if self.host == OLLAMA_REGISTRY and self.namespace == "library" else f"{self.namespace}/"
        host = "" if self.host == OLLAMA_REGISTRY else f"{self.host}/"
        return f"{host}{prefix}{self.name}:{self.tag}"

    def file_name(self) -> str:
        """A file name safe on every filesystem: ollama-llama3.2-1b.gguf."""
        return "ollama-" + re.sub(r"[^A-Za-z0-9._-]", "-", self.ref()) + ".gguf"


Source = HFSource | URLSource | OllamaSource


def parse_source(text: str) -> Source:
    """Parse a catalog source; ConfigError (without the file name) when it is not one we can fetch."""
    if text.startswith("hf://"):
        owner, _, rest = text.removeprefix("hf://").partition("/")
        repo, _, path = rest.partition("/")
        if not owner or not repo or not path or path.endswith("/"):
            raise ConfigError(f"source {text!r}: expected hf://owner/repo/path/to/file.gguf")
        return HFSource(owner, repo, path)
    if text.startswith(("https://", "http://")):
        if not urlsplit(text).path.rstrip("/").rsplit("/", 1)[-1]:
            raise ConfigError(f"source {text!r}: the URL must end with a file name")
        return URLSource(text)
    if text.startswith("ollama://"):
        return parse_ollama_ref(text.removeprefix("ollama://"))
    raise ConfigError(f"source {text!r}: expected hf://owner/repo/file.gguf, https://... or ollama://name:tag")


def parse_ollama_ref(ref: str) -> OllamaSource:
    """`name[:tag]`, `namespace/name[:tag]` or `host/namespace/name[:tag]`, as `ollama pull` takes them."""
    path, colon, tag = ref.rpartition(":")
    if not colon or "/" in tag:  # no tag, or the colon was a host's port
        path, tag = ref, ""
    parts = [p for p in path.split("/") if p]
    if not 1 <= len(parts) <= 3 or not re.fullmatch(r"[A-Za-z0-9._-]*", tag):
        raise ConfigError(f"ollama model {ref!r}: expected name:tag, e.g. llama3.2:1b")
    if len(parts) == 1:
        parts = [OLLAMA_REGISTRY, "library", *parts]
    elif len(parts) == 2:
        parts = [OLLAMA_REGISTRY, *parts]
    host, namespace, name = parts
    return OllamaSource(host=host, namespace=namespace, name=name, tag=tag or "latest")
