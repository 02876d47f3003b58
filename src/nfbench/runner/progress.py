"""Progress on stderr: one bar for the run's cases and one for the sessions of the current case."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

__all__ = ["RunProgress"]


class RunProgress:
    """Rich progress bars, or nothing at all when ``quiet``."""

    def __init__(self, *, total: int, quiet: bool = False) -> None:
        self._progress = None if quiet else Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=Console(stderr=True), transient=False,
        )
        self._total = total
        self._cases = self._lesions = None

    def __enter__(self) -> RunProgress:
        if self._progress is not None:
            self._progress.__enter__()
            self._cases = self._progress.add_task("cases", total=self._total)
            self._lesions = self._progress.add_task("sessions", total=1, visible=False)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def advance(self, n: int) -> None:
        if self._progress is not None and n:
            self._progress.advance(self._cases, n)

    def start_case(self, description: str) -> None:
        if self._progress is not None:
            self._progress.reset(self._lesions, total=1, description=f"  {description}", visible=True)

    def lesion(self, done: int, total: int) -> None:
        if self._progress is not None:
            self._progress.update(self._lesions, completed=done, total=total)
