from __future__ import annotations

import math
import sys
import time

import numpy as np
import pytest

from nfbench.runner.memory import PeakMemory


def test_peak_memory_sees_an_allocation_inside_the_block():
    with PeakMemory(interval_s=0.001) as before:
        pass
    with PeakMemory(interval_s=0.001) as peak:
        block = np.ones(200 * 2**20 // 8)  # 200 MB, touched
        time.sleep(0.2)  # numpy holds the GIL while filling: let the sampler see the block alive
        del block
    assert peak.mb - before.mb > 150


def test_gpu_memory_is_nan_without_cuda():
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        pytest.skip("CUDA present: the GPU figure is measured")
    with PeakMemory() as peak:
        pass
    assert math.isnan(peak.gpu_mb)
