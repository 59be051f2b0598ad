"""The node identity: made once, kept private, stable across restarts, rotated with the old key listed."""

from __future__ import annotations

import json
import os
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


@pytest.mark.parametrize(
    ("part", "mode", "fix"),
    [
        ("", 0o777, "chmod 700"),
        ("", 0o720, "chmod 700"),
        (KEY_FILE, 0o644, "chmod 600"),
        (KEY_FILE, 0o604, "chmod 600"),
        (PUBLIC_FILE, 0o666, "chmod 644"),
    ],
)
def test_parts_other_users_may_touch_are_refused_with_the_fix(tmp_path: Path, part: str, mode: int, fix: str) -> None:
    load_or_create(tmp_path)
    path = tmp_path / part if part else tmp_path
    os.chmod(path, mode)
    for load in (load_or_create, rotate, published):  # serve and `identity`; doctor
        with pytest.raises(IdentityError, match=f"{fix} {path}`"):
            load(tmp_path)
    os.chmod(path, int(fix.split()[1], 8))
    load_or_create(tmp_path)


def test_the_modes_it_makes_are_accepted(tmp_path: Path) -> None:
    """Readable by others is fine where nothing secret is: the folder at 0755, node.json at 0644."""
    load_or_create(tmp_path)
    os.chmod(tmp_path, 0o755)
    assert stat.S_IMODE((tmp_path / PUBLIC_FILE).stat().st_mode) == 0o644
    assert published(tmp_path) is not None and load_or_create(tmp_path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"public_key": "not base64!"}, "invalid public key .* must be base64"),
        ({"public_key": "AAAA"}, "invalid public key .* 32 bytes"),
        ({"public_key": "A" * 43 + "="}, "invalid public key .* not the key named"),
        ({"public_key": ["nested"]}, "is damaged"),
        ({"key_id": {"a": 1}}, "is damaged"),
        ({"retired_at": 5}, "is damaged"),
    ],
)
def test_a_node_json_listing_an_invalid_key_is_refused(tmp_path: Path, change: dict[str, object], message: str) -> None:
    """Published, it made every check against the node's keys fail (POST /v1/receipts/verify: a 500)."""
    node = load_or_create(tmp_path)
    listed = json.loads((tmp_path / PUBLIC_FILE).read_text())
    listed["keys"].append({**node.current.view(), "retired_at": "2025-01-01T00:00:00Z", **change})
    (tmp_path / PUBLIC_FILE).write_text(json.dumps(listed))
    for load in (load_or_create, published):
        with pytest.raises(IdentityError, match=message):
            load(tmp_path)


def test_a_node_json_nested_past_the_parser_is_damaged(tmp_path: Path) -> None:
    load_or_create(tmp_path)
    (tmp_path / PUBLIC_FILE).write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(IdentityError, match="is damaged"):
        published(tmp_path)
