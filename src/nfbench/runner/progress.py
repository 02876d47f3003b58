"""Progress on stderr: one bar for the run's case results, with counts of done, skipped and failed,
and (in-process runs) one for the sessions of the current case."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

__all__ = ["RunProgress"]


class RunProgress:
    """Rich progress bars, or nothing at all when ``quiet``; ``sessions=False``: the case bar only."""

    def __init__(self, *, total: int, quiet: bool = False, sessions: bool = True) -> None:
        self._progress = None if quiet else Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=Console(stderr=True), transient=False,
        )
        self._total = total
        self._cases = self._lesions = None
        self.done = self.skipped = self.failed = 0
        self._sessions = sessions

    def __enter__(self) -> RunProgress:
        if self._progress is not None:
            self._progress.__enter__()
            self._cases = self._progress.add_task(self._counts(), total=self._total)
            if self._sessions:
                self._lesions = self._progress.add_task("sessions", total=1, visible=False)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def _counts(self) -> str:
        return f"cases: {self.done} done, {self.skipped} skipped, {self.failed} failed"

    def skip(self, n: int) -> None:
        """``n`` case results that were already in the run store."""
        self.skipped += n
        self._advance(n)

    def finished(self, *, failed: bool) -> None:
        """One case result written, ``failed`` or not."""
        if failed:
            self.failed += 1
        else:
            self.done += 1
        self._advance(1)

    def _advance(self, n: int) -> None:
        if self._progress is not None:
            self._progress.update(self._cases, advance=n, description=self._counts())

    def start_case(self, description: str) -> None:
        if self._lesions is not None:
            self._progress.reset(self._lesions, total=1, description=f"  {description}", visible=True)

    def lesion(self, done: int, total: int) -> None:
        if self._lesions is not None:
            self._progress.update(self._lesions, completed=done, total=total)
