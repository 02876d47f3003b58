from __future__ import annotations

import math
import subprocess
import sys

import pytest

from nfbench.runner.memory import PeakMemory


_ALLOCATE = """
import time
import numpy as np
from nfbench.runner.memory import PeakMemory
with PeakMemory(interval_s=0.001) as before:
    pass
with PeakMemory(interval_s=0.001) as peak:
    block = np.ones(200 * 2**20 // 8)  # 200 MB, touched
    time.sleep(0.2)  # numpy fills it holding the GIL: let the sampler see the block alive
    del block
print(peak.mb - before.mb)
"""


def test_peak_memory_sees_an_allocation_inside_the_block():
    # A fresh interpreter: in a long test session the allocator may hand back pages that are
    # already resident, which no RSS-based measure can see.
    out = subprocess.run([sys.executable, "-c", _ALLOCATE], capture_output=True, text=True, check=True)
    assert float(out.stdout) > 150


def test_gpu_memory_is_nan_without_cuda():
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        pytest.skip("CUDA present: the GPU figure is measured")
    with PeakMemory() as peak:
        pass
    assert math.isnan(peak.gpu_mb)
