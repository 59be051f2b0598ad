"""The node identity: made once, kept private, stable across restarts, rotated with the old key listed."""

from __future__ import annotations

import stat
import threading
from pathlib import Path

import pytest

from pinaivu_local.errors import IdentityError
from pinaivu_local.receipts.identity import KEY_FILE, PUBLIC_FILE, load_or_create, published, rotate


def test_first_use_creates_a_private_key_only_this_user_reads(tmp_path: Path) -> None:
    folder = tmp_path / "identity"
    assert published(folder) is None
    node = load_or_create(folder)
    assert stat.S_IMODE((folder / KEY_FILE).stat().st_mode) == 0o600
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert node.node_id == f"node-{node.current.key_id}"
    assert published(folder) == {"node_id": node.node_id, "keys": [node.current.view()]}
    assert "PRIVATE" not in (folder / PUBLIC_FILE).read_text()


def test_the_same_identity_on_every_load(tmp_path: Path) -> None:
    first, second = load_or_create(tmp_path), load_or_create(tmp_path)
    assert (first.node_id, first.current) == (second.node_id, second.current)
    assert second.sign(b"x") == first.sign(b"x")  # Ed25519 is deterministic: the same private key


def test_concurrent_first_starts_agree_on_one_key(tmp_path: Path) -> None:
    results: list[str] = []

    def start() -> None:
        results.append(load_or_create(tmp_path / "identity").current.public_key)

    threads = [threading.Thread(target=start) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 8 and len(set(results)) == 1
    assert [p.name for p in (tmp_path / "identity").iterdir() if p.name.startswith(".")] == []


def test_rotation_keeps_the_node_id_and_lists_the_old_key_as_retired(tmp_path: Path) -> None:
    old = load_or_create(tmp_path)
    new = rotate(tmp_path)
    assert new.node_id == old.node_id and new.current.key_id != old.current.key_id
    assert [k.key_id for k in new.retired] == [old.current.key_id]
    assert new.retired[0].retired_at is not None
    again = load_or_create(tmp_path)  # what the next start sees
    assert again.current == new.current and again.retired == new.retired
    third = rotate(tmp_path)
    assert [k.key_id for k in third.retired] == [old.current.key_id, new.current.key_id]


def test_a_damaged_key_file_is_one_clear_error(tmp_path: Path) -> None:
    load_or_create(tmp_path)
    (tmp_path / KEY_FILE).write_text("not a key")
    with pytest.raises(IdentityError, match="damaged; move it away"):
        load_or_create(tmp_path)


def test_a_damaged_public_file_is_one_clear_error(tmp_path: Path) -> None:
    load_or_create(tmp_path)
    (tmp_path / PUBLIC_FILE).write_text("{")
    with pytest.raises(IdentityError, match=r"public identity file .* is damaged"):
        load_or_create(tmp_path)
