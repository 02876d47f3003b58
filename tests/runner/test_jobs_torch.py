"""`--jobs` with a torch model whose driver already ran torch on several threads (the demo's case).

The driver's OpenMP thread pool does not survive a fork: without care a worker's first convolution
waits on it forever. Run in a subprocess with a timeout so that a hang fails instead of blocking.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("torch")

_SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    import torch
    from nfbench.models.baselines.sphere import SphereModel
    from nfbench.models.registry import register_model
    from nfbench.interaction.scenarios import scenario_from_options
    from nfbench.runner.evaluate import EvaluationPlan, evaluate

    torch.set_num_threads(2)
    conv = torch.nn.Conv3d(1, 4, 3, padding=1)
    with torch.no_grad():
        conv(torch.ones(1, 1, 32, 32, 32))  # the driver's thread pool now exists

    class ConvSphere(SphereModel):
        name = "conv-sphere"
        def start(self, image, *, seed=0):
            with torch.no_grad():  # a learned model's per-case forward, in the worker
                conv(torch.from_numpy(np.ascontiguousarray(image.data[None, None, :32, :8, :32], dtype=np.float32)))
            return super().start(image, seed=seed)

    register_model("conv-sphere", ConvSphere)
    plan = EvaluationPlan(data=sys.argv[1], test_sets=("imagesTr", "imagesTs_1", "imagesTs_2"), models=("conv-sphere",),
                          scenarios=(scenario_from_options("lesion-corrective", lesions=1, interactions=1),))
    summary = evaluate(plan, sys.argv[2], jobs=2, quiet=True)
    assert summary.evaluated == 4 and not summary.failed, summary.failed
""")


def test_forked_workers_run_torch_after_the_driver_did(tiny_dataset, tmp_path):
    done = subprocess.run([sys.executable, "-c", _SCRIPT, str(tiny_dataset), str(tmp_path / "run")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
