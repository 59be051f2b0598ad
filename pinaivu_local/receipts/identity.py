"""The node's Ed25519 identity: created at first start in the data dir, rotated by the CLI, never sent.

On disk, in `DATA_DIR/identity/` (mode 0700):
- `signing-key.pem`: the current private key (PKCS#8, mode 0600). Only this node reads it.
- `node.json`: public: the node id and every public key it has used, the retired ones with the
  moment they were retired, so receipts signed before a rotation still verify.

A folder other users may write to, a key they may read or a node.json they may write is refused, as
ssh refuses an open private key, rather than fixed: while it was open the key may have been copied
or a file replaced, and only the operator can tell whether `chmod` is enough or the key must be
rotated. A node.json listing a key that is not a valid Ed25519 public key, or not the key its id
names, is refused too: every check of a receipt against the published keys would fail on it.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import os
import secrets
import stat
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from pinaivu_local.clock import utcnow
from pinaivu_local.errors import IdentityError

ALGORITHM = "ed25519"
KEY_FILE = "signing-key.pem"
PUBLIC_FILE = "node.json"


@dataclass(frozen=True)
class PublicKey:
    """One public key a node has signed with."""

    key_id: str
    public_key: str  # base64 of the raw 32 bytes
    created_at: str
    retired_at: str | None = None

    def view(self) -> dict[str, Any]:
        """As /v1/node and node.json show it."""
        return {
            "key_id": self.key_id,
            "algorithm": ALGORITHM,
            "public_key": self.public_key,
            "created_at": self.created_at,
            "retired_at": self.retired_at,
        }

    def verifier(self) -> Ed25519PublicKey:
        """The key as cryptography's object, for verifying signatures."""
        return Ed25519PublicKey.from_public_bytes(base64.b64decode(self.public_key))


@dataclass(frozen=True)
class NodeIdentity:
    """A node's id, its current signing key and the keys it has retired."""

    node_id: str
    current: PublicKey
    retired: tuple[PublicKey, ...]
    _private: Ed25519PrivateKey

    def sign(self, message: bytes) -> str:
        """The base64 Ed25519 signature of `message` with the current key."""
        return base64.b64encode(self._private.sign(message)).decode("ascii")

    def public(self) -> dict[str, Any]:
        """What anyone may know: the node id, the current key and the retired ones."""
        return {
            "node_id": self.node_id,
            "algorithm": ALGORITHM,
            "current_key": self.current.view(),
            "retired_keys": [k.view() for k in self.retired],
        }


def key_id_of(raw_public: bytes) -> str:
    """A key's short name: the first 16 hex digits of the SHA-256 of its raw 32 bytes."""
    return hashlib.sha256(raw_public).hexdigest()[:16]


def raw_public_key(value: str) -> bytes:
    """The raw 32 bytes of a base64 Ed25519 public key; ValueError says what is wrong with it."""
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("a public key must be base64 (32 raw bytes)") from None
    if len(raw) != 32:
        raise ValueError(f"an Ed25519 public key has 32 bytes, this one {len(raw)}")
    return raw


def load_or_create(folder: Path) -> NodeIdentity:
    """The identity kept in `folder`, created there on first use (safe against a concurrent first start)."""
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        _refuse_open_permissions(folder)
        private = _read_private(folder / KEY_FILE)
        if private is None:
            private = _create_private(folder / KEY_FILE)
        return _with_public_file(folder, private)
    except OSError as exc:
        raise IdentityError(f"The node identity in {folder} cannot be used: {exc.strerror or exc}.") from None


def rotate(folder: Path) -> NodeIdentity:
    """A new signing key; the old public key stays listed as retired. The node id does not change."""
    old = load_or_create(folder)
    private = Ed25519PrivateKey.generate()
    now = _now()
    retired = (*old.retired, replace(old.current, retired_at=now))
    identity = NodeIdentity(old.node_id, _public_key(private, now), retired, private)
    try:
        # The public file first: a crash in between leaves the old key signing and the new one listed.
        _write_public(folder, identity)
        _replace_private(folder / KEY_FILE, private)
    except OSError as exc:
        raise IdentityError(f"The node identity in {folder} cannot be rotated: {exc.strerror or exc}.") from None
    return identity


def published(folder: Path) -> dict[str, Any] | None:
    """The public identity kept in `folder` without creating one (node id and keys), or None; IdentityError
    for what would stop a server from starting with it (open permissions, a damaged file)."""
    try:
        _refuse_open_permissions(folder)
        saved = _read_public(folder / PUBLIC_FILE)
    except OSError as exc:
        raise IdentityError(f"The node identity in {folder} cannot be used: {exc.strerror or exc}.") from None
    if saved is None:
        return None
    return {"node_id": saved["node_id"], "keys": [k.view() for k in saved["keys"]]}


def _with_public_file(folder: Path, private: Ed25519PrivateKey) -> NodeIdentity:
    """Read node.json, adding the current key when it is not listed (first start, or after a crash)."""
    saved = _read_public(folder / PUBLIC_FILE)
    current = _public_key(private, _now())
    keys = {k.key_id: k for k in saved["keys"]} if saved else {}
    node_id = saved["node_id"] if saved else f"node-{current.key_id}"
    if current.key_id in keys:
        current = replace(keys.pop(current.key_id), retired_at=None)
    retired = tuple(replace(k, retired_at=k.retired_at or _now()) for k in keys.values())
    identity = NodeIdentity(node_id, current, retired, private)
    if saved is None or saved["raw"] != _public_document(identity):
        _write_public(folder, identity)
    return identity


# What other users must not be able to do to each part, as mode bits, and the mode to set instead.
_PRIVATE = (
    ("", 0o022, "writable by other users", "700"),  # the folder: its files could be replaced
    (KEY_FILE, 0o077, "readable by other users", "600"),
    (PUBLIC_FILE, 0o022, "writable by other users", "644"),  # the keys it lists are the ones trusted
)


def _refuse_open_permissions(folder: Path) -> None:
    """IdentityError naming the first part of the identity other users may read or write, and the fix."""
    if os.name != "posix":
        return  # no POSIX modes to check
    for name, forbidden, what, fix in _PRIVATE:
        path = folder / name if name else folder
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
        except (FileNotFoundError, NotADirectoryError):
            continue  # not made yet (a damaged layout is reported where it is read)
        if mode & forbidden:
            raise IdentityError(
                f"The node identity {path} is {what} (mode {mode:04o}); run `chmod {fix} {path}`, "
                "and `pinaivu-local identity rotate` if another user may have used it."
            )


def _public_key(private: Ed25519PrivateKey, created_at: str) -> PublicKey:
    raw = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return PublicKey(key_id_of(raw), base64.b64encode(raw).decode("ascii"), created_at)


def _read_private(path: Path) -> Ed25519PrivateKey | None:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except ValueError:
        raise IdentityError(f"The node's signing key {path} is damaged; move it away to make a new identity.") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise IdentityError(f"The node's signing key {path} is not an Ed25519 key.")
    return key


def _pem(private: Ed25519PrivateKey) -> bytes:
    return private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _create_private(path: Path) -> Ed25519PrivateKey:
    """A new key written with O_EXCL: of two processes starting at once, one writes and both use it."""
    private = Ed25519PrivateKey.generate()
    partial = _partial(path)
    _write_secret(partial, _pem(private))
    try:
        os.link(partial, path)  # atomic and refuses to replace: the first start wins
    except FileExistsError:
        existing = _read_private(path)
        if existing is None:
            raise
        private = existing
    finally:
        partial.unlink(missing_ok=True)
    return private


def _replace_private(path: Path, private: Ed25519PrivateKey) -> None:
    partial = _partial(path)
    _write_secret(partial, _pem(private))
    os.replace(partial, path)


def _write_secret(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _read_public(path: Path) -> dict[str, Any] | None:
    try:
        raw = path.read_text()
        data = json.loads(raw)
        node_id = data["node_id"]
        keys = [PublicKey(k["key_id"], k["public_key"], k["created_at"], k.get("retired_at")) for k in data["keys"]]
        if not isinstance(node_id, str) or not all(_well_typed(k) for k in keys):
            raise TypeError("a field of the wrong type")
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
        raise IdentityError(f"The node's public identity file {path} is damaged.") from None
    for key in keys:
        try:
            if key_id_of(raw_public_key(key.public_key)) != key.key_id:
                raise ValueError(f"it is not the key named {key.key_id}")
        except ValueError as exc:
            raise IdentityError(
                f"The node's public identity file {path} lists an invalid public key {key.key_id[:32]!r} ({exc}); "
                "restore it from a backup, or move it away to list only the current key."
            ) from None
    return {"node_id": node_id, "keys": keys, "raw": raw}


def _well_typed(key: PublicKey) -> bool:
    fields = (key.key_id, key.public_key, key.created_at)
    return all(isinstance(f, str) for f in fields) and isinstance(key.retired_at, str | None)


def _public_document(identity: NodeIdentity) -> str:
    keys = [identity.current.view(), *(k.view() for k in identity.retired)]
    return json.dumps({"node_id": identity.node_id, "keys": keys}, indent=1) + "\n"


def _write_public(folder: Path, identity: NodeIdentity) -> None:
    partial = _partial(folder / PUBLIC_FILE)
    partial.write_text(_public_document(identity))
    with contextlib.suppress(OSError):
        partial.chmod(0o644)
    os.replace(partial, folder / PUBLIC_FILE)


def _partial(path: Path) -> Path:
    """A name of its own beside `path` for writing before the atomic rename (processes and threads)."""
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")


def _now() -> str:
    return utcnow().isoformat().replace("+00:00", "Z")
