"""Resuming a partial download only when the server proves it still has the same version (If-Range)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from pinaivu_local.catalog import ModelSpec
from pinaivu_local.errors import PullError
from pinaivu_local.settings import Settings
from pinaivu_local.tiny_models.writer import write_tiny_model
from pinaivu_local.weights.progress import SilentProgress
from pinaivu_local.weights.pull import Puller
from tests.helpers import TinyModels
from tests.weights.hub import Hub
from tests.weights.test_pull import RecordingProgress, spec_for

RESOLVE = "/org/repo/resolve/main/tiny.gguf"


@pytest.fixture(scope="module")
def reupload(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """Another upload of the F16 tiny model: same size and header, other weights from byte 8512 on."""
    return write_tiny_model(tmp_path_factory.mktemp("reupload") / "tiny.gguf", quant="F16", seed=5).read_bytes()


def interrupted_pull(settings: Settings, hub: Hub, data: bytes, *, lfs: bool = False) -> ModelSpec:
    """Serve `data`, cut its transfer half-way, give up: half of it is left in tiny.gguf.part."""
    spec = spec_for(settings, hub.put("org/repo", "tiny.gguf", data, lfs=lfs))
    hub.drop_once.add(hub.body_path(RESOLVE))
    with Puller(settings, SilentProgress(), retries=0) as puller, pytest.raises(PullError, match="interrupted"):
        puller.pull(spec)
    assert part_of(spec).stat().st_size == len(data) // 2
    return spec


def part_of(spec: ModelSpec) -> Path:
    return spec.file.with_name(spec.file.name + ".part")


def body_requests(hub: Hub) -> list[tuple[str | None, str | None, int, int, int]]:
    """(Range, If-Range, status, first byte, bytes sent) of each request that was answered with file bytes."""
    return [(r.range, r.if_range, r.status, r.start, r.sent) for r in hub.requests if r.status != 302]


@pytest.mark.parametrize(
    ("lfs", "validators"),
    [(False, "etag"), (True, "etag"), (False, "last-modified"), (True, "last-modified"), (True, "none")],
    ids=["etag", "lfs-etag", "last-modified", "lfs-last-modified", "lfs-cdn-without-validators"],
)
def test_an_unchanged_file_is_resumed_where_it_stopped(
    settings: Settings, hub: Hub, tiny_models: TinyModels, lfs: bool, validators: str
) -> None:
    data = tiny_models.f16.read_bytes()
    hub.validators = validators  # type: ignore[assignment]
    spec = interrupted_pull(settings, hub, data, lfs=lfs)
    recorded = json.loads(part_of(spec).with_name("tiny.gguf.part.json").read_text())
    sent = hub.validator_headers(hub.body_path(RESOLVE))
    assert (recorded["etag"], recorded["last_modified"]) == (sent.get("ETag"), sent.get("Last-Modified"))
    assert recorded["size"] == len(data)
    assert recorded["linked_etag"] == (f'"{hashlib.sha256(data).hexdigest()}"' if lfs else None)
    progress = RecordingProgress()
    with Puller(settings, progress) as puller:
        result = puller.pull(spec)
    assert result.file.read_bytes() == data and result.sha256 == hashlib.sha256(data).hexdigest()
    half = len(data) // 2
    if_range = sent.get("ETag", sent.get("Last-Modified"))  # behind the Hub with neither: its X-Linked-Etag is checked
    assert body_requests(hub) == [
        (None, None, 200, 0, half),  # cut half-way
        (f"bytes={half}-", if_range, 206, half, len(data) - half),  # the rest, and only the rest
    ]
    assert progress.begins == [("llama3.2:1b", len(data), half)] and progress.notes == []
    assert not list(settings.models_dir.glob("*.part*"))


@pytest.mark.parametrize(
    ("lfs", "validators", "honour_if_range"),
    [
        (False, "etag", True),
        (True, "etag", True),
        (False, "etag", False),
        (True, "etag", False),
        (True, "none", True),
    ],
    ids=["if-range", "lfs-if-range", "if-range-ignored", "lfs-if-range-ignored", "lfs-cdn-without-validators"],
)
def test_a_file_replaced_on_the_server_is_fetched_whole_never_mixed(
    settings: Settings,
    hub: Hub,
    tiny_models: TinyModels,
    reupload: bytes,
    lfs: bool,
    validators: str,
    honour_if_range: bool,
) -> None:
    first = tiny_models.f16.read_bytes()
    assert len(reupload) == len(first) and reupload[: len(first) // 2] != first[: len(first) // 2]
    hub.validators = validators  # type: ignore[assignment]
    spec = interrupted_pull(settings, hub, first, lfs=lfs)
    old_etag = hub.validator_headers(hub.body_path(RESOLVE)).get("ETag")
    hub.put("org/repo", "tiny.gguf", reupload, lfs=lfs)  # same URL, another upload
    hub.honour_if_range = honour_if_range
    progress = RecordingProgress()
    with Puller(settings, progress) as puller:
        result = puller.pull(spec)
    assert result.file.read_bytes() == reupload
    assert result.sha256 == hashlib.sha256(reupload).hexdigest()
    half = len(first) // 2
    resumed = (f"bytes={half}-", old_etag)
    if old_etag and honour_if_range:  # the server answers the If-Range with the whole new file
        assert body_requests(hub)[1:] == [(*resumed, 200, 0, len(reupload))]
    else:  # a 206 of another version: refused by its ETag (or the Hub's X-Linked-Etag), then fetched whole
        assert body_requests(hub)[1:] == [
            (*resumed, 206, half, len(reupload) - half),
            (None, None, 200, 0, len(reupload)),
        ]
    assert progress.notes == [
        f"llama3.2:1b: the file changed on {hub.url.removeprefix('http://')} since tiny.gguf.part was fetched; "
        "starting over"
    ]
    assert not list(settings.models_dir.glob("*.part*"))


def test_a_server_without_validators_restarts_from_zero(settings: Settings, hub: Hub, tiny_models: TinyModels) -> None:
    data = tiny_models.f16.read_bytes()
    hub.validators = "none"
    spec = spec_for(settings, hub.put("org/repo", "tiny.gguf", data))
    hub.drop_once.add(RESOLVE)
    progress = RecordingProgress()
    with Puller(settings, progress, backoff_s=0) as puller:
        result = puller.pull(spec)
    assert result.file.read_bytes() == data
    assert body_requests(hub) == [(None, None, 200, 0, len(data) // 2), (None, None, 200, 0, len(data))]
    assert progress.notes == ["llama3.2:1b: no record of which version of the file tiny.gguf.part holds; starting over"]


def test_a_server_that_ignores_range_sends_the_whole_file_again(
    settings: Settings, hub: Hub, tiny_models: TinyModels
) -> None:
    data = tiny_models.f16.read_bytes()
    hub.honour_range = False
    spec = interrupted_pull(settings, hub, data)
    progress = RecordingProgress()
    with Puller(settings, progress) as puller:
        assert puller.pull(spec).file.read_bytes() == data
    assert [r.status for r in hub.requests] == [200, 200]
    assert progress.notes == [
        f"llama3.2:1b: {hub.url.removeprefix('http://')} sent the whole file, not the rest of tiny.gguf.part; "
        "starting over"
    ]


def test_a_416_starts_over(settings: Settings, hub: Hub, tiny_models: TinyModels) -> None:
    # The server ignores If-Range and the new upload is shorter than what was fetched of the old one.
    shorter = tiny_models.q4.read_bytes()
    spec = interrupted_pull(settings, hub, tiny_models.f16.read_bytes())
    hub.put("org/repo", "tiny.gguf", shorter)
    hub.honour_if_range = False
    progress = RecordingProgress()
    with Puller(settings, progress) as puller:
        assert puller.pull(spec).file.read_bytes() == shorter
    assert [r.status for r in hub.requests] == [200, 416, 200]
    assert progress.notes == [
        f"llama3.2:1b: {hub.url.removeprefix('http://')} cannot resume tiny.gguf.part (HTTP 416); starting over"
    ]


def test_a_part_fetched_from_another_url_is_not_resumed(settings: Settings, hub: Hub, tiny_models: TinyModels) -> None:
    data = tiny_models.f16.read_bytes()
    spec = interrupted_pull(settings, hub, data)
    record = part_of(spec).with_name("tiny.gguf.part.json")
    record.write_text(json.dumps({**json.loads(record.read_text()), "url": "https://elsewhere.example/tiny.gguf"}))
    progress = RecordingProgress()
    with Puller(settings, progress) as puller:
        assert puller.pull(spec).file.read_bytes() == data
    assert body_requests(hub)[1:] == [(None, None, 200, 0, len(data))]
    assert progress.notes == [
        "llama3.2:1b: tiny.gguf.part was fetched from another URL (https://elsewhere.example/tiny.gguf); starting over"
    ]
