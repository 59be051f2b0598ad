"""Puller against a real HTTP server on 127.0.0.1 and a fake Ollama store: resume, checksums, refusals."""

from __future__ import annotations

import dataclasses
import hashlib
import socket
from pathlib import Path

import pytest
from pydantic import SecretStr

from pinaivu_local.catalog import ModelSpec
from pinaivu_local.errors import ChecksumMismatch, OfflineRefused, PullError
from pinaivu_local.settings import Settings
from pinaivu_local.weights.checksum import read_record, record_path
from pinaivu_local.weights.progress import SilentProgress
from pinaivu_local.weights.pull import Puller
from tests.helpers import TinyModels
from tests.weights.hub import Hub
from tests.weights.ollama_store import add_to_ollama_store


class RecordingProgress:
    """Remembers every begin, how many bytes were reported, and the notes."""

    def __init__(self) -> None:
        self.begins: list[tuple[str, int | None, int]] = []
        self.advanced = 0
        self.ended = 0
        self.notes: list[str] = []

    def begin(self, label: str, total: int | None, done: int = 0) -> None:
        self.begins.append((label, total, done))

    def advance(self, n: int) -> None:
        self.advanced += n

    def end(self) -> None:
        self.ended += 1

    def note(self, line: str) -> None:
        self.notes.append(line)


def spec_for(settings: Settings, source: str, sha256: str | None = None, model_id: str = "llama3.2:1b") -> ModelSpec:
    name = source.rsplit("/", 1)[-1] if not source.startswith("ollama://") else "ollama.gguf"
    return ModelSpec(model_id, source, settings.models_dir / name, n_ctx=256, n_gpu_layers=0, parallel=1, sha256=sha256)


def test_pull_with_progress_records_the_hash(settings: Settings, hub: Hub, tiny_models: TinyModels) -> None:
    data = tiny_models.f16.read_bytes()
    spec = spec_for(settings, hub.put("org/repo", "sub/tiny.gguf", data))
    progress = RecordingProgress()
    with Puller(settings, progress) as puller:
        result = puller.pull(spec)
    assert result.action == "downloaded" and result.file == spec.file
    assert spec.file.read_bytes() == data
    assert result.sha256 == hashlib.sha256(data).hexdigest() == read_record(spec.file)
    assert record_path(spec.file).read_text() == f"{result.sha256}  tiny.gguf\n"
    assert progress.begins == [("llama3.2:1b", len(data), 0)] and progress.advanced == len(data)
    assert progress.ended == 1
    assert [r.path for r in hub.requests] == ["/org/repo/resolve/main/sub/tiny.gguf"]
    assert not list(settings.models_dir.glob("*.part*"))  # nor the part's version record
    assert progress.notes == []
    with Puller(settings, progress) as puller:  # a second pull finds it in place
        assert puller.pull(spec).action == "present"
    assert len(hub.requests) == 1


def test_interrupted_download_resumes_with_a_range_request(
    settings: Settings, hub: Hub, tiny_models: TinyModels
) -> None:
    data = tiny_models.f16.read_bytes()
    source = hub.put("org/repo", "tiny.gguf", data)
    hub.drop_once.add("/org/repo/resolve/main/tiny.gguf")
    progress = RecordingProgress()
    with Puller(settings, progress, backoff_s=0) as puller:
        result = puller.pull(spec_for(settings, source, sha256=hashlib.sha256(data).hexdigest()))
    assert result.file.read_bytes() == data
    first, second = hub.requests
    assert first.range is None and first.if_range is None
    assert second.range == f"bytes={len(data) // 2}-"
    assert second.if_range == hub.validator_headers("/org/repo/resolve/main/tiny.gguf")["ETag"]
    assert progress.begins[1] == ("llama3.2:1b", len(data), len(data) // 2)
    assert progress.notes == []


def test_a_part_of_unknown_version_is_fetched_again(settings: Settings, hub: Hub, tiny_models: TinyModels) -> None:
    # e.g. left by a version of pinaivu-local that did not record versions: resuming it could mix two uploads
    data = tiny_models.q8.read_bytes()
    spec = spec_for(settings, hub.put("org/repo", "q8.gguf", data))
    spec.file.parent.mkdir(parents=True)
    spec.file.with_name("q8.gguf.part").write_bytes(data[:1000])
    progress = RecordingProgress()
    with Puller(settings, progress) as puller:
        result = puller.pull(spec)
    assert result.file.read_bytes() == data and result.sha256 == hashlib.sha256(data).hexdigest()
    assert [(r.range, r.sent) for r in hub.requests] == [(None, len(data))]
    assert progress.notes == ["llama3.2:1b: no record of which version of the file q8.gguf.part holds; starting over"]


def test_giving_up_after_retries_keeps_the_part(settings: Settings, hub: Hub, tiny_models: TinyModels) -> None:
    data = tiny_models.f16.read_bytes()
    spec = spec_for(settings, hub.put("org/repo", "tiny.gguf", data))
    hub.drop_once.add("/org/repo/resolve/main/tiny.gguf")
    with Puller(settings, SilentProgress(), retries=0) as puller, pytest.raises(PullError) as caught:
        puller.pull(spec)
    assert "interrupted" in caught.value.message and "run the same command again to resume" in caught.value.message
    assert spec.file.with_name("tiny.gguf.part").stat().st_size == len(data) // 2
    assert spec.file.with_name("tiny.gguf.part.json").exists()
    assert not spec.file.exists()
    with Puller(settings, SilentProgress()) as puller:
        assert puller.pull(spec).file.read_bytes() == data
    assert hub.requests[-1].range == f"bytes={len(data) // 2}-" and hub.requests[-1].if_range is not None
    assert not spec.file.with_name("tiny.gguf.part.json").exists()


def test_checksum_mismatch_is_refused_and_deleted(settings: Settings, hub: Hub, tiny_models: TinyModels) -> None:
    data = tiny_models.f16.read_bytes()
    spec = spec_for(settings, hub.put("org/repo", "tiny.gguf", data), sha256="ab" * 32)
    with Puller(settings, SilentProgress()) as puller, pytest.raises(ChecksumMismatch) as caught:
        puller.pull(spec)
    assert caught.value.message == (
        f"llama3.2:1b: SHA-256 mismatch: got {hashlib.sha256(data).hexdigest()}, the catalog pins {'ab' * 32}; "
        "the download was deleted"
    )
    assert list(settings.models_dir.iterdir()) == []


def test_a_file_that_is_not_a_gguf_is_refused(settings: Settings, hub: Hub) -> None:
    spec = spec_for(settings, hub.put("org/repo", "login.gguf", b"<!DOCTYPE html><html>sign in</html>"))
    with Puller(settings, SilentProgress()) as puller, pytest.raises(PullError) as caught:
        puller.pull(spec)
    assert "did not send a GGUF file (it starts with b'<!DO')" in caught.value.message
    assert list(settings.models_dir.iterdir()) == []


def test_a_truncated_gguf_is_refused(settings: Settings, hub: Hub, tiny_models: TinyModels) -> None:
    # Whole as far as HTTP goes, but the header promises more tensor data than the file has.
    data = tiny_models.f16.read_bytes()[:-64]
    spec = spec_for(settings, hub.put("org/repo", "short.gguf", data))
    with Puller(settings, SilentProgress()) as puller, pytest.raises(PullError) as caught:
        puller.pull(spec)
    assert caught.value.message == (
        f"llama3.2:1b: the file is truncated ({len(data)} of {len(data) + 64} bytes); nothing was kept"
    )
    assert list(settings.models_dir.iterdir()) == []


def test_offline_is_refused_without_a_request(settings: Settings, hub: Hub) -> None:
    spec = spec_for(settings, hub.put("org/repo", "tiny.gguf", b"GGUF"))
    offline = settings.model_copy(update={"hf_hub_offline": True})
    with Puller(offline, SilentProgress()) as puller, pytest.raises(OfflineRefused) as caught:
        puller.pull(spec)
    assert caught.value.message == "llama3.2:1b: HF_HUB_OFFLINE is set, so hf://org/repo/tiny.gguf is not downloaded"
    assert hub.requests == []


def test_token_goes_to_the_hub_only(settings: Settings, hub: Hub, tiny_models: TinyModels) -> None:
    data = tiny_models.f16.read_bytes()
    hf = spec_for(settings, hub.put("org/repo", "a.gguf", data))
    plain = spec_for(settings, f"{hub.url}/org/repo/resolve/main/a.gguf", model_id="plain")
    plain = dataclasses.replace(plain, file=settings.models_dir / "b.gguf")
    with_token = settings.model_copy(update={"hf_token": SecretStr("hf_secret")})
    with Puller(with_token, SilentProgress()) as puller:
        puller.pull(hf)
        puller.pull(plain)
    assert [r.authorization for r in hub.requests] == ["Bearer hf_secret", None]


def test_not_found_and_unreachable_are_one_line(settings: Settings, hub: Hub) -> None:
    with Puller(settings, SilentProgress()) as puller:
        with pytest.raises(PullError) as missing:
            puller.pull(spec_for(settings, "hf://org/repo/none.gguf"))
        assert missing.value.message == f"llama3.2:1b: not found (HTTP 404): {hub.url}/org/repo/resolve/main/none.gguf"
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            closed = s.getsockname()[1]  # bound, never listening: connections are refused
            with pytest.raises(PullError) as refused:
                puller.pull(spec_for(settings, f"http://127.0.0.1:{closed}/x.gguf"))
    assert refused.value.message.startswith(f"llama3.2:1b: cannot reach 127.0.0.1:{closed} (")
    assert "\n" not in refused.value.message


def test_ollama_import_links_the_blob(settings: Settings, tmp_path: Path, tiny_models: TinyModels) -> None:
    data = tiny_models.q8.read_bytes()
    digest = add_to_ollama_store(tmp_path / "ollama", "llama3.2", "1b", data)
    spec = spec_for(settings, "ollama://llama3.2:1b")
    progress = RecordingProgress()
    with Puller(settings, progress) as puller:
        result = puller.pull(spec)
    assert result.action == "linked" and result.sha256 == digest
    blob = tmp_path / "ollama" / "blobs" / f"sha256-{digest}"
    assert spec.file.stat().st_ino == blob.stat().st_ino
    assert progress.begins == [("llama3.2:1b (verifying llama3.2:1b)", len(data), 0)]


def test_from_ollama_uses_the_model_id_as_the_tag(settings: Settings, tmp_path: Path, tiny_models: TinyModels) -> None:
    data = tiny_models.f16.read_bytes()
    add_to_ollama_store(tmp_path / "ollama", "llama3.2", "3b", data)
    spec = spec_for(settings, "hf://org/repo/Llama-3.2-3B.gguf", model_id="llama3.2:3b")
    with Puller(settings, SilentProgress()) as puller:
        assert puller.pull(spec, from_ollama=True).action == "linked"
    assert spec.file.read_bytes() == data


def test_ollama_problems_are_one_line(settings: Settings, tmp_path: Path, tiny_models: TinyModels) -> None:
    store = tmp_path / "ollama"
    with Puller(settings, SilentProgress()) as puller:
        with pytest.raises(PullError) as absent:
            puller.pull(spec_for(settings, "ollama://llama3.2:1b"))
        assert "run `ollama pull llama3.2:1b` first" in absent.value.message
        digest = add_to_ollama_store(store, "llama3.2", "1b", tiny_models.f16.read_bytes())
        (store / "blobs" / f"sha256-{digest}").write_bytes(tiny_models.q8.read_bytes())  # damaged store
        with pytest.raises(ChecksumMismatch) as damaged:
            puller.pull(spec_for(settings, "ollama://llama3.2:1b"))
    assert "the store is damaged" in damaged.value.message
    assert list(settings.models_dir.iterdir()) == []
