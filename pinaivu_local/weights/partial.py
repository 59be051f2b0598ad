"""A partial download (`<file>.part`) and the record of which version of which URL it holds.

A `Range` request alone resumes whatever the server has now: if the file was replaced since the
bytes on disk were fetched, the result is half one upload and half the other. So the version is
recorded next to the part (`<file>.part.json`) before its first byte is written, sent back as
`If-Range` when resuming, and compared with what the server answers (ETag or Last-Modified, and the
Hub's X-Linked-Etag on its redirect to the CDN); a part of unknown version is never resumed.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import httpx


@dataclass(frozen=True)
class Version:
    """What a server says identifies the bytes it sends for a URL."""

    etag: str | None  # a strong ETag of the response that carries the bytes (a weak one cannot guard a range)
    last_modified: str | None
    linked_etag: str | None  # the Hub's X-Linked-Etag for an LFS file (its SHA-256), seen on the redirect to its CDN
    size: int | None  # bytes of the whole file

    @classmethod
    def of(cls, response: httpx.Response) -> Version:
        """The version a 200 or 206 response (after any redirects) carries."""
        etag = response.headers.get("etag")
        linked = [r.headers["x-linked-etag"] for r in (*response.history, response) if "x-linked-etag" in r.headers]
        return cls(
            etag=etag if etag and not etag.startswith("W/") else None,
            last_modified=response.headers.get("last-modified"),
            linked_etag=linked[-1] if linked else None,
            size=whole_size(response),
        )

    @property
    def validator(self) -> str | None:
        """What `If-Range` sends: the ETag, else the Last-Modified date; None when the server gave neither."""
        return self.etag or self.last_modified

    @property
    def known(self) -> bool:
        """Whether this version can be told from another: by a validator, or by the Hub's id of the content.

        A CDN that sends no validator can still be resumed from behind the Hub: the redirect of the
        very request that brings the bytes names the content they are (X-Linked-Etag), and the CDN
        URL it points to is that content's.
        """
        return self.validator is not None or self.linked_etag is not None

    def same_as(self, other: Version) -> bool:
        """Whether `other` is provably this version (unknown is never the same)."""
        return (
            self.known
            and self.validator == other.validator
            and self.linked_etag == other.linked_etag
            and self.size == other.size
        )


@dataclass(frozen=True)
class PartRecord:
    """The URL a part was fetched from and the version it holds."""

    url: str
    version: Version


def record_path(part: Path) -> Path:
    """Where the version of `part` is recorded."""
    return part.with_name(part.name + ".json")


def save(part: Path, record: PartRecord) -> None:
    """Record the version `part` is about to receive (written whole or not at all)."""
    path = record_path(part)
    fresh = path.with_name(path.name + ".new")
    fresh.write_text(json.dumps({"url": record.url, **asdict(record.version)}, indent=1) + "\n")
    os.replace(fresh, path)


def load(part: Path) -> PartRecord | None:
    """The recorded version of `part`, or None when there is none or it is unreadable."""
    try:
        data = json.loads(record_path(part).read_text())
        version = Version(
            etag=_str_or_none(data["etag"]),
            last_modified=_str_or_none(data["last_modified"]),
            linked_etag=_str_or_none(data["linked_etag"]),
            size=data["size"] if isinstance(data["size"], int) else None,
        )
        return PartRecord(str(data["url"]), version)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def forget(part: Path) -> None:
    """Remove the record (the download completed, or the part is gone)."""
    with contextlib.suppress(FileNotFoundError):
        record_path(part).unlink()


def discard(part: Path) -> None:
    """Remove the part and its record."""
    part.unlink(missing_ok=True)
    forget(part)


def whole_size(response: httpx.Response) -> int | None:
    """The whole file's size: a 206's Content-Range total, else a 200's Content-Length."""
    if response.status_code == 206:
        total = response.headers.get("content-range", "").rpartition("/")[2]
        return int(total) if total.isdigit() else None
    length = response.headers.get("content-length", "")
    return int(length) if length.isdigit() else None


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
