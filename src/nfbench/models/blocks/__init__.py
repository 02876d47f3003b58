"""Building blocks shared by learned models, so each model is one file on top of them.

- :mod:`~nfbench.models.blocks.grids`: the native canonical grid to a model's grid and back
  (orientation, resampling, fixed-size windows);
- :mod:`~nfbench.models.blocks.encodings`: click encodings on crops (balls, Gaussians,
  exponential distance maps);
- :mod:`~nfbench.models.blocks.sliding_window`: sliding-window inference with blending;
- :mod:`~nfbench.models.blocks.native_answer`: the answer on the native grid, updated where the
  windows changed, optionally only its clicked components;
- :mod:`~nfbench.models.blocks.slices`: coronal slice stacks for 2D models;
- :mod:`~nfbench.models.blocks.checkpoints`: strict checkpoint loading (needs torch);
- :mod:`~nfbench.models.blocks.frames`: a volume as a stack of 2D frames (the layout of
  ``nfbench data slice``);
- :mod:`~nfbench.models.blocks.sam2_frames`: SAM2's network, weights and inputs, shared by the
  ``sam2`` model and ``nfbench train sam2`` (needs torch and sam2);
- :mod:`~nfbench.models.blocks.stcn_network`: STCN's space-time memory network and its weights,
  shared by :mod:`nfbench.models.stcn` (propagation) and ``nfbench train stcn`` (needs torch).

Only ``checkpoints``, ``sam2_frames`` and ``stcn_network`` import torch (and sam2), and only when
called: the others need numpy and scipy alone.
Import the submodules directly (``from nfbench.models.blocks.grids import GridMap``).
"""
