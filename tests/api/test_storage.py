"""The API when its storage fails: a real full disk (a small tmpfs), a database locked by another process.

Issue #10, points 6 and 7: reads and authentication keep working, inference that cannot be recorded
is a 503 `storage_unavailable` with Retry-After, no server path reaches a client, /health says why,
and a response goes out only once its record is durable.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from pinaivu_local.api.app import create_app
from pinaivu_local.catalog import load_catalog
from pinaivu_local.keys.bootstrap import ensure_admin_key
from pinaivu_local.keys.store import KeyStore
from pinaivu_local.settings import Settings
from pinaivu_local.storage.database import Database
from tests.helpers import TEST_KEY, TinyModels, write_catalog

CHAT = {"model": "llama3.2:1b", "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 3}


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MB tmpfs: a real filesystem that a test can fill up."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs to fill up needs root")
    mount = tmp_path / "disk"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)], capture_output=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def app_on(data_dir: Path, tmp_path: Path, tiny_models: TinyModels) -> TestClient[Litestar]:
    catalog_file = write_catalog(
        tmp_path / "models.toml", {"llama3.2:1b": {"path": str(tiny_models.f16), "n_ctx": 512, "parallel": 2}}
    )
    settings = Settings(data_dir=data_dir, models_file=catalog_file, threads=1, max_queue=4)
    database = Database(settings.database)
    try:
        ensure_admin_key(KeyStore(database), TEST_KEY)
    finally:
        database.close()
    client = TestClient(create_app(settings, load_catalog(catalog_file, settings.models_dir)), timeout=60)
    client.headers["authorization"] = f"Bearer {TEST_KEY}"
    return client


def fill(disk: Path) -> Path:
    """Write a file until the filesystem has no byte left."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for chunk in (1 << 20, 1 << 16, 1 << 12, 1):
            try:
                while True:
                    os.write(fd, b"\0" * chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return filler


def wait_for(condition, timeout: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_full_disk_keeps_the_api_up_and_refuses_unrecordable_inference(
    small_disk: Path, tmp_path: Path, tiny_models: TinyModels
) -> None:
    data_dir = small_disk / "data"
    with app_on(data_dir, tmp_path, tiny_models) as client:
        assert client.post("/v1/chat/completions", json=CHAT).status_code == 200
        fresh = client.post("/admin/keys", json={"name": "fresh"}).json()  # never used yet
        fresh_auth = {"authorization": f"Bearer {fresh['key']}"}
        # Empty the WAL into the main file, so that the next write must grow a file; then fill the disk.
        with sqlite3.connect(data_dir / "pinaivu.db") as conn:
            assert conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0
        filler = fill(small_disk)

        # Reads and authentication need no write: a key never used before still works.
        models = client.get("/v1/models", headers=fresh_auth)
        assert models.status_code == 200, models.text
        assert client.get("/admin/keys").status_code == 200

        # Inference that cannot be recorded: 503 storage_unavailable with Retry-After, no path.
        refused = client.post("/v1/chat/completions", json=CHAT, headers=fresh_auth)
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["code"] == "storage_unavailable"
        assert "disk is full" in refused.json()["error"]["message"]
        assert int(refused.headers["retry-after"]) >= 1
        assert str(small_disk) not in refused.text and "pinaivu.db" not in refused.text
        # The next one is refused before it runs.
        again = client.post("/v1/chat/completions", json=CHAT, headers=fresh_auth)
        assert again.status_code == 503 and again.json()["error"]["code"] == "storage_unavailable"

        health = client.get("/health")
        assert health.status_code == 503 and health.json()["status"] == "unavailable"
        storage = health.json()["storage"]
        assert storage["state"] == "failing" and storage["reason"] == "the disk is full"
        assert str(small_disk) not in health.text

        filler.unlink()  # room again: the queued record is written, inference resumes
        wait_for(lambda: client.get("/health").json()["storage"]["state"] == "ok")
        served = client.post("/v1/chat/completions", json=CHAT, headers=fresh_auth)
        assert served.status_code == 200
        record = client.get(f"/v1/requests/{served.headers['x-request-id']}")
        assert record.status_code == 200 and record.json()["status"] == 200
        # The request answered 503 while the disk was full has its record too, saying so.
        failed = client.get("/v1/requests", params={"status": 503}).json()["data"]
        assert len(failed) == 1 and "storage unavailable" in failed[0]["error"]
        # The fresh key's last use reached the database (written with the records).
        wait_for(
            lambda: (
                sqlite3.connect(data_dir / "pinaivu.db")
                .execute("SELECT last_used_at FROM api_keys WHERE id = ?", (fresh["id"],))
                .fetchone()[0]
                is not None
            )
        )


def test_a_response_waits_while_another_process_holds_the_write_lock(tmp_path: Path, tiny_models: TinyModels) -> None:
    """The response goes out once its record is written: after the lock is released, never before."""
    data_dir = tmp_path / "data"
    with app_on(data_dir, tmp_path, tiny_models) as client:
        assert client.post("/v1/chat/completions", json=CHAT).status_code == 200
        holder = sqlite3.connect(data_dir / "pinaivu.db", isolation_level=None, check_same_thread=False)
        holder.execute("BEGIN EXCLUSIVE")
        hold_s = 2.0
        released = threading.Timer(hold_s, holder.rollback)
        started = time.monotonic()
        released.start()
        try:
            response = client.post("/v1/chat/completions", json=CHAT)
            elapsed = time.monotonic() - started
        finally:
            released.join()
            holder.close()
        assert response.status_code == 200, response.text
        assert elapsed >= hold_s - 0.1  # it waited for the lock (the busy timeout is longer)
        # Durable when the response arrived: no waiting for a background write.
        record = client.get(f"/v1/requests/{response.headers['x-request-id']}")
        assert record.status_code == 200 and record.json()["status"] == 200


def test_a_stream_sends_done_only_once_its_record_is_written(tmp_path: Path, tiny_models: TinyModels) -> None:
    data_dir = tmp_path / "data"
    with app_on(data_dir, tmp_path, tiny_models) as client:
        assert client.post("/v1/chat/completions", json=CHAT).status_code == 200
        holder = sqlite3.connect(data_dir / "pinaivu.db", isolation_level=None, check_same_thread=False)
        holder.execute("BEGIN EXCLUSIVE")
        released = threading.Timer(1.5, holder.rollback)
        released.start()
        try:
            with client.stream("POST", "/v1/chat/completions", json={**CHAT, "stream": True}) as stream:
                request_id = stream.headers["x-request-id"]
                lines = [line for line in stream.iter_lines() if line]
            record = client.get(f"/v1/requests/{request_id}")
        finally:
            released.join()
            holder.close()
        assert lines[-1] == "data: [DONE]"
        assert record.status_code == 200 and record.json()["status"] == 200
