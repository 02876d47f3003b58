"""Peak resident memory of this process over a block of code, sampled in a background thread."""

from __future__ import annotations

import resource
import threading
from pathlib import Path

__all__ = ["PeakMemory", "current_rss_mb"]

_STATM = Path("/proc/self/statm")
_PAGE_MB = resource.getpagesize() / 2**20


def current_rss_mb() -> float:
    """Resident set size now (Linux); elsewhere the process's lifetime peak, the best available."""
    try:
        return int(_STATM.read_text().split()[1]) * _PAGE_MB
    except (OSError, IndexError, ValueError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class PeakMemory:
    """``with PeakMemory() as peak: ...`` then ``peak.mb``: the highest RSS seen, sampled every 5 ms.

    Sampling misses spikes shorter than the interval; the process-wide ``ru_maxrss`` cannot be
    reset between cases, which is why a sampler is used.
    """

    def __init__(self, interval_s: float = 0.005) -> None:
        self.interval_s = interval_s
        self.mb = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.mb = max(self.mb, current_rss_mb())

    def __enter__(self) -> PeakMemory:
        self.mb = current_rss_mb()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.mb = max(self.mb, current_rss_mb())
