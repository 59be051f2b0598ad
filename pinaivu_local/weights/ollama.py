"""Model files already in a local Ollama store: find a tag's GGUF blob and link it, never download."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from pinaivu_local.errors import PullError
from pinaivu_local.weights.sources import OllamaSource

MODEL_LAYER = "application/vnd.ollama.image.model"


def default_stores() -> list[Path]:
    """Where Ollama keeps models when OLLAMA_MODELS is unset: per user, then the Linux service's."""
    return [Path.home() / ".ollama" / "models", Path("/usr/share/ollama/.ollama/models")]


def find_blob(stores: list[Path], source: OllamaSource) -> tuple[Path, str]:
    """(blob path, sha256 hex) of the tag's model layer in the first store that has the tag."""
    manifests = [store / "manifests" / source.host / source.namespace / source.name / source.tag for store in stores]
    manifest = next((m for m in manifests if m.is_file()), None)
    if manifest is None:
        where = " or ".join(str(s) for s in stores)
        raise PullError(
            f"ollama model {source.ref()} is not in {where}; run `ollama pull {source.ref()}` first "
            "(or set OLLAMA_MODELS to the store's directory)"
        )
    store = manifest.parents[4]
    digest = _model_digest(manifest)
    algorithm, _, hex_digest = digest.partition(":")
    if algorithm != "sha256" or len(hex_digest) != 64:
        raise PullError(f"{manifest}: unexpected layer digest {digest!r}")
    blob = store / "blobs" / f"sha256-{hex_digest}"
    if not blob.is_file():
        raise PullError(f"{manifest}: its model blob {blob} is missing; run `ollama pull {source.ref()}` again")
    return blob, hex_digest.lower()


def _model_digest(manifest: Path) -> str:
    try:
        layers = json.loads(manifest.read_text())["layers"]
        return next(str(layer["digest"]) for layer in layers if layer.get("mediaType") == MODEL_LAYER)
    except OSError as exc:
        raise PullError(f"{manifest}: cannot read the Ollama manifest ({exc.strerror})") from None
    except (ValueError, KeyError, TypeError, AttributeError):
        raise PullError(f"{manifest}: not an Ollama manifest with a model layer") from None
    except StopIteration:
        raise PullError(f"{manifest}: the manifest names no model layer ({MODEL_LAYER})") from None


def link_or_copy(blob: Path, target: Path) -> str:
    """Hard-link `blob` to `target` (same filesystem), else copy it; return which was done."""
    target.unlink(missing_ok=True)
    try:
        os.link(blob, target)
        return "linked"
    except OSError:  # another filesystem, or links not allowed here
        pass
    try:
        shutil.copyfile(blob, target)
    except OSError as exc:
        target.unlink(missing_ok=True)
        raise PullError(f"cannot copy {blob} to {target} ({exc.strerror})") from None
    return "copied"
