"""Peak memory of this process over a block of code: resident memory sampled in a background
thread, and the peak CUDA memory torch allocated when a model runs on a GPU."""

from __future__ import annotations

import math
import resource
import sys
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


def _torch_cuda():  # noqa: ANN202 - torch is optional
    """``torch.cuda`` when a model has imported torch and CUDA is initialised, else None.

    Never imports torch itself: weight-free runs stay free of its start-up cost.
    """
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return None
    return torch.cuda


class PeakMemory:
    """``with PeakMemory() as peak: ...`` then ``peak.mb`` (highest RSS seen, sampled every 5 ms)
    and ``peak.gpu_mb`` (torch's peak CUDA allocation in the block; NaN without CUDA).

    Sampling misses spikes shorter than the interval; the process-wide ``ru_maxrss`` cannot be
    reset between cases, which is why a sampler is used.
    """

    def __init__(self, interval_s: float = 0.005) -> None:
        self.interval_s = interval_s
        self.mb = 0.0
        self.gpu_mb = math.nan
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.mb = max(self.mb, current_rss_mb())

    def __enter__(self) -> PeakMemory:
        self.mb = current_rss_mb()
        cuda = _torch_cuda()
        if cuda is not None:
            cuda.reset_peak_memory_stats()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.mb = max(self.mb, current_rss_mb())
        cuda = _torch_cuda()
        if cuda is not None:
            self.gpu_mb = cuda.max_memory_allocated() / 2**20
