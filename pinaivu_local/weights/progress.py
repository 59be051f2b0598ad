"""Progress of a transfer or a hash: an interface, a silent one and a rich progress bar."""

from __future__ import annotations

from typing import Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)


class TransferProgress(Protocol):
    """Told about bytes as they move, one begin/end pair per file, and of the odd event worth a line."""

    def begin(self, label: str, total: int | None, done: int = 0) -> None:
        """A transfer of `total` bytes (None when unknown) starts, `done` of them already here."""

    def advance(self, n: int) -> None:
        """`n` more bytes arrived."""

    def end(self) -> None:
        """The transfer stopped (finished or not)."""

    def note(self, line: str) -> None:
        """Tell the user one line about the transfer (e.g. that a partial file was discarded)."""


class SilentProgress:
    """Shows nothing."""

    def begin(self, label: str, total: int | None, done: int = 0) -> None:
        """Ignore."""

    def advance(self, n: int) -> None:
        """Ignore."""

    def end(self) -> None:
        """Ignore."""

    def note(self, line: str) -> None:
        """Ignore."""


class BarProgress:
    """A rich progress bar on stderr: size, speed and time left."""

    def __init__(self, console: Console | None = None) -> None:
        self._console = console or Console(stderr=True)
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def begin(self, label: str, total: int | None, done: int = 0) -> None:
        """Draw a new bar."""
        self.end()
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(binary_units=True),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=self._console,
            transient=False,
        )
        self._progress.start()
        self._task = self._progress.add_task(label, total=total, completed=done)

    def advance(self, n: int) -> None:
        """Move the bar."""
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task, n)

    def end(self) -> None:
        """Leave the final state of the bar on screen."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
            self._task = None

    def note(self, line: str) -> None:
        """Print the line above any bar, as it is (no markup, not wrapped)."""
        self._console.print(line, markup=False, highlight=False, soft_wrap=True)
