"""`dins-onnx`: DINs from an ONNX file through ONNX Runtime, and the export and import of such files.

The original DINs weights exist as TensorFlow checkpoints and their ONNX exports (seed_spec §3.2,
§5.6) with inputs ``image`` (B, A, S, R, 1) and ``guide`` (B, A, S, R, 2) (float32, only the batch
dynamic; (A, S, R) = (10, 512, 160)) and logits (B, A, S, R, 2). :class:`DINsOnnxModel` runs any
file with that signature on the CPU, with everything else of ``dins`` (its grid, normalisation,
guides, sliding window and mapping back to the native grid): the window is the file's fixed
(S, R, A) input size, and ``sw_batch_size`` windows go through one run of batch B (a file whose
batch axis is fixed to n gets batches of n, the last one padded with zeros). :func:`export_onnx` writes our PyTorch network in that signature, and
:func:`onnx_state_dict` reads an ONNX file's weights back into it, so the published weights can be
fine-tuned in PyTorch without TensorFlow.

Name mapping (ONNX initializer → PyTorch parameter of :func:`~nfbench.models.dins.build_network`),
for the two kinds of file:

- Ours (``nfbench export dins``): each parameter is an initializer of the same name
  (``down1.conv1.weight``, ``bridge.norm1.bias``, ``up4.up.weight``, ``dim.1.bias``, ``final.weight``,
  …) in PyTorch's layout, so the mapping is the identity. Exporters merge initializers of equal
  value (the norm scales of an untrained network are all ones), so the exporter records each merged
  parameter's surviving initializer in the file's metadata (``nfbench.aliases``, JSON
  ``{parameter: initializer}``).
- The original's (tf2onnx 1.16.1 ``from_keras`` of the Keras DINs, seed_spec §5.6): tf2onnx names a
  weight after the graph op that reads the Keras variable and folds its layout into ONNX's, which
  is PyTorch's ((out, in, kd, kh, kw); a transposed convolution (in, out, kd, kh, kw)):
  ``<block>.conv1.weight`` ← ``…/<block>/conv1/Conv3D/ReadVariableOp:0`` (``conv2`` alike),
  ``<block>.up.weight`` ← ``…/<block>/up/conv3d_transpose/ReadVariableOp:0``, ``final.weight`` /
  ``.bias`` ← ``…/final/Conv3D/ReadVariableOp:0`` / ``…/final/BiasAdd/ReadVariableOp:0``,
  ``dim.1.weight`` / ``.bias`` ← ``…/dim/conv3d[_N]/Conv3D/…`` / ``…/BiasAdd/…`` (Keras numbers the
  unnamed layer when the converter builds one model per fold). The InstanceNorms become arithmetic
  (``x · γ/√(σ² + ε) + (β − μ · γ/√(σ² + ε))``), so their weights are found by the ops that use
  them: ``<block>.norm1.weight`` (γ) is the constant input of the op ``…/<block>/norm1/batchnorm/mul``,
  ``.bias`` (β) the first input of ``…/batchnorm/sub``, and ε (the input of ``…/batchnorm/add``)
  must be the 1e-3 the PyTorch network uses. ``<block>`` is one of ``down1``–``down4``, ``bridge``,
  ``up4``–``up1``. ``tests/models/data/make_tf_dins_onnx.py`` writes such a file with TensorFlow
  (the test fixture; logits from TensorFlow beside it).

A file with neither kind of names is refused with the names it holds rather than guessed at.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nfbench.models.base import ModelError
from nfbench.models.blocks.checkpoints import state_dict_problems
from nfbench.models.dins import GUIDE_SIGMA, ROI, SPACING, DINsModel, _check_options, parse_roi, parse_triple, build_network
from nfbench.models.registry import missing_file, missing_modules

if TYPE_CHECKING:
    import torch

__all__ = ["ALIASES_KEY", "DINsOnnxModel", "export_onnx", "network_from_onnx", "onnx_state_dict"]

#: Metadata key of the exporter's ``{parameter: initializer}`` record of merged initializers.
ALIASES_KEY = "nfbench.aliases"
_INPUTS = {"image": 1, "guide": 2}  # input name → channels


def export_onnx(network: torch.nn.Module, path: str | Path, roi: Sequence[int] = ROI, *, opset: int = 17) -> Path:
    """Write ``network`` (a DINs of :func:`build_network`) to ``path`` in the original signature, window ``roi`` (S, R, A).

    The batch axis is dynamic; (A, S, R) is fixed to the window, as in the original files.
    """
    import warnings

    import onnx
    import torch

    s, r, a = parse_roi(roi)
    path = Path(path)
    image, guide = torch.zeros(1, a, s, r, 1), torch.zeros(1, a, s, r, 2)
    batch = {0: "batch"}
    was_training = network.training
    network.eval()
    try:
        # The TorchScript exporter (dynamo=False): the same graph as the torch.export one, ~10x faster
        # to write here; its warnings are about the shape checks and padding, constants at a fixed window.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(network, (image, guide), str(path), input_names=list(_INPUTS), output_names=["logits"],
                              dynamic_axes={"image": batch, "guide": batch, "logits": batch},
                              opset_version=opset, dynamo=False)
    finally:
        network.train(was_training)
    model = onnx.load(str(path))
    _name_output_axes(model, (a, s, r))
    _record_aliases(model, network.state_dict())
    onnx.save(model, str(path))
    return path


def _name_output_axes(model: Any, window: tuple[int, int, int]) -> None:
    """Logits shape (batch, A, S, R, 2): the tracer leaves the output's axes with made-up names."""
    dims = model.graph.output[0].type.tensor_type.shape.dim
    for dim, size in zip(dims[1:], (*window, 2)):
        dim.dim_value = size
    dims[0].dim_param = "batch"


def _record_aliases(model: Any, state: dict[str, torch.Tensor]) -> None:
    """Record, for each parameter without its own initializer, an initializer of the same value."""
    from onnx import numpy_helper

    stored = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    aliases = {}
    for name, tensor in state.items():
        if name in stored:
            continue
        value = tensor.detach().cpu().numpy()
        same = [k for k, v in stored.items() if v.shape == value.shape and np.array_equal(v, value)]
        if not same:
            raise ModelError(f"ONNX export lost the parameter {name!r} (no initializer holds its value)")
        aliases[name] = same[0]
    entry = model.metadata_props.add()
    entry.key, entry.value = ALIASES_KEY, json.dumps(aliases, sort_keys=True)


def onnx_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The PyTorch DINs state dict held by an ONNX file, ours or the original's (see the module's name mapping)."""
    import torch

    model = _load_onnx(path)
    names = sorted(build_network(1, 1).state_dict())
    keras = any(init.name.endswith(_KERAS_PROBE) for init in model.graph.initializer)
    found = _keras_weights(model, names, path) if keras else _our_weights(model, names, path)
    lost = [n for n, value in found.items() if value is None]
    if lost:
        held = sorted(init.name for init in model.graph.initializer)
        shown = ", ".join(held[:8]) + (f" … and {len(held) - 8} more" if len(held) > 8 else "")
        raise ModelError(f"ONNX file {str(path)!r} has no initializer for {len(lost)} DINs parameter(s) "
                         f"({', '.join(lost[:4])}{' …' if len(lost) > 4 else ''}); it holds: {shown or 'none'}")
    return {n: torch.from_numpy(np.array(value, np.float32)) for n, value in found.items()}


def _our_weights(model: Any, names: list[str], path: str | Path) -> dict[str, np.ndarray | None]:
    from onnx import numpy_helper

    stored = {init.name: init for init in model.graph.initializer}
    meta = {p.key: p.value for p in model.metadata_props}
    try:
        aliases = json.loads(meta.get(ALIASES_KEY, "{}"))
    except json.JSONDecodeError as err:
        raise ModelError(f"ONNX file {str(path)!r}: metadata {ALIASES_KEY} is not JSON ({err})") from err
    found = {n: stored[n] if n in stored else stored.get(aliases.get(n, "")) for n in names}
    return {n: None if init is None else numpy_helper.to_array(init) for n, init in found.items()}


_KERAS_PROBE = "/down1/conv1/Conv3D/ReadVariableOp:0"
_KERAS_EPSILON = 1e-3  # tensorflow-addons InstanceNormalization's default, and build_network's


def _keras_weights(model: Any, names: list[str], path: str | Path) -> dict[str, np.ndarray | None]:
    """Weights of a tf2onnx export of the Keras DINs, by the names of the ops that read them."""
    import re

    from onnx import numpy_helper

    stored = {init.name: init for init in model.graph.initializer}
    ops = {node.name: node for node in model.graph.node}

    def initializer(pattern: str) -> np.ndarray | None:
        hits = [name for name in stored if re.search(pattern, name)]
        return numpy_helper.to_array(stored[hits[0]]) if len(hits) == 1 else None

    def op_constant(suffix: str, position: int | None = None) -> np.ndarray | None:
        hits = [node for name, node in ops.items() if name.endswith(suffix)]
        if len(hits) != 1:
            return None
        inputs = list(hits[0].input) if position is None else list(hits[0].input)[position:position + 1]
        constants = [numpy_helper.to_array(stored[i]) for i in inputs if i in stored]
        return constants[0].reshape(-1) if len(constants) == 1 else None

    found: dict[str, np.ndarray | None] = {}
    for name in names:
        parts = name.split(".")
        block, layer, kind = parts[0], parts[1], parts[-1]
        op = "Conv3D" if kind == "weight" else "BiasAdd"
        if block == "dim":
            found[name] = initializer(rf"/dim/conv3d(_\d+)?/{op}/ReadVariableOp:0$")
        elif block == "final":
            found[name] = initializer(rf"/final/{op}/ReadVariableOp:0$")
        elif layer == "up":
            found[name] = initializer(rf"/{block}/up/conv3d_transpose/ReadVariableOp:0$")
        elif layer.startswith("conv"):
            found[name] = initializer(rf"/{block}/{layer}/Conv3D/ReadVariableOp:0$")
        else:  # norm1, norm2: γ scales 1/√(σ² + ε), β is what the scaled mean is taken from
            scope = f"/{block}/{layer}/batchnorm/"
            found[name] = op_constant(scope + "mul") if kind == "weight" else op_constant(scope + "sub", 0)
            epsilon = op_constant(scope + "add", 1) if kind == "weight" else None  # once per norm
            if epsilon is not None and not np.allclose(epsilon, _KERAS_EPSILON):
                raise ModelError(f"ONNX file {str(path)!r}: {block}.{layer} has InstanceNorm epsilon {float(epsilon[0]):g}, "
                                 f"not the {_KERAS_EPSILON:g} of tensorflow-addons that nfbench's DINs uses")
    return found


def network_from_onnx(path: str | Path) -> tuple[torch.nn.Module, dict[str, int]]:
    """A PyTorch DINs with an ONNX file's weights, and its width options (``base_filters``, ``max_filters``)."""
    state = onnx_state_dict(path)
    widths = {"base_filters": int(state["down1.conv1.weight"].shape[0]),
              "max_filters": int(state["bridge.conv1.weight"].shape[0])}
    network = build_network(**widths)
    problems = state_dict_problems(state, network.state_dict())
    if problems:
        raise ModelError(f"ONNX file {str(path)!r} does not fit a DINs network: {'; '.join(problems)}")
    network.load_state_dict(state, strict=True)
    return network, widths


def onnx_window(path: str | Path) -> tuple[int, int, int] | None:
    """The window (S, R, A) an ONNX file's ``image`` input fixes, None where an axis is dynamic (the
    DINs a converted file makes must run on that window: another gives other logits)."""
    image = next((i for i in _load_onnx(path).graph.input if i.name == "image"), None)
    dims = [] if image is None else [d.dim_value for d in image.type.tensor_type.shape.dim]
    if len(dims) != 5 or not all(dims[1:4]):
        return None
    a, s, r = dims[1:4]
    return s, r, a


def _load_onnx(path: str | Path) -> Any:
    import onnx

    problems = missing_file(path, what="ONNX file")
    if problems:
        raise ModelError(problems[0])
    try:
        return onnx.load(str(path))
    except Exception as err:  # protobuf raises several types for a foreign file
        raise ModelError(f"ONNX file {str(path)!r} cannot be read: {type(err).__name__}: {err}") from err


class DINsOnnxModel(DINsModel):
    """DINs from an ONNX file (``--weights model.onnx``) on ONNX Runtime's CPU provider.

    Options as ``dins`` without the widths (they are in the file): ``roi`` (defaults to the file's
    fixed input size, and must equal it), ``overlap``, ``spacing``, ``guide_sigma``, ``sw_batch_size``,
    ``keep_clicked``, ``honour_clicks``, and ``threads``: ONNX Runtime's intra-op threads (0 keeps its default, the
    number of physical cores: both cores of a 2-core machine).
    """

    name = "dins-onnx"
    package = "onnxruntime"  # the version the results record (nfbench.runner.provenance)
    description = "DINs 3D CNN from an ONNX file (ONNX Runtime, CPU), e.g. the original exports (needs weights)"

    def __init__(
        self,
        weights: str | Path | None = None,
        roi: Sequence[int] | str | None = None,
        overlap: float = 0.25,
        spacing: Sequence[float] | str = SPACING,
        sw_batch_size: int = 4,
        keep_clicked: bool = False,
        threads: int = 0,
        guide_sigma: Sequence[float] | str = GUIDE_SIGMA,
        honour_clicks: bool = False,
    ) -> None:
        _check_options(self.name, weights, overlap, sw_batch_size, threads)
        import onnxruntime as ort

        where = f"model {self.name!r}: ONNX file {str(weights)!r}"
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only
        options.intra_op_num_threads = int(threads)
        try:
            self.session = ort.InferenceSession(str(weights), options, providers=["CPUExecutionProvider"])
        except Exception as err:  # ORT raises its own exception types for a foreign file
            raise ModelError(f"{where} cannot be loaded by ONNX Runtime: {str(err).strip().splitlines()[0]}") from err
        window = self._window(where)
        if roi is None:  # the file's fixed axes, the original's window on its dynamic ones
            self.roi = parse_roi(tuple(ROI[k] if size is None else size for k, size in enumerate(window)))
        else:
            self.roi = parse_roi(roi)
            if any(size is not None and size != asked for size, asked in zip(window, self.roi)):
                shown = tuple("any" if size is None else size for size in window)
                raise ModelError(f"{where} has a fixed window (S, R, A) = {shown}, but roi {self.roi} was asked for")
        self.overlap, self.spacing = float(overlap), parse_triple(spacing, "spacing")
        self.guide_sigma = parse_triple(guide_sigma, "guide_sigma")
        self.sw_batch_size, self.keep_clicked = int(sw_batch_size), bool(keep_clicked)
        self.honour_clicks = bool(honour_clicks)
        self.output = self.session.get_outputs()[0].name
        batch = self.session.get_inputs()[0].shape[0]
        self.file_batch = batch if isinstance(batch, int) and batch > 0 else None
        """The file's fixed batch size, or None when its batch axis is dynamic."""

    def _window(self, where: str) -> tuple[int | None, int | None, int | None]:
        """The file's window (S, R, A), None on a dynamic axis (the original's last exports leave A dynamic); checks the signature."""
        inputs = {i.name: i.shape for i in self.session.get_inputs()}
        if set(inputs) != set(_INPUTS):
            raise ModelError(f"{where} has inputs {sorted(inputs)}, not the DINs signature (image, guide)")
        sizes = set()
        for name, channels in _INPUTS.items():
            shape = inputs[name]
            if len(shape) != 5 or shape[4] != channels:
                raise ModelError(f"{where}: input {name!r} has shape {shape}, not (batch, A, S, R, {channels})")
            sizes.add(tuple(n if isinstance(n, int) else None for n in shape[1:4]))
        if len(sizes) != 1:
            raise ModelError(f"{where}: inputs 'image' and 'guide' differ in (A, S, R): {sorted(map(str, sizes))}")
        a, s, r = sizes.pop()
        return s, r, a

    @classmethod
    def requirements(cls, weights: str | Path | None = None) -> list[str]:
        return missing_modules("onnxruntime", extra="torch") + missing_file(weights)

    def forward(self, batch: np.ndarray) -> np.ndarray:
        """Logits (B, 2, S, R, A) of channel-first windows (B, 3, S, R, A), in one run (or runs of the file's batch)."""
        windows = np.ascontiguousarray(batch.transpose(0, 4, 2, 3, 1), dtype=np.float32)  # (B, A, S, R, 3)
        size = self.file_batch or len(windows)
        out = []
        for first in range(0, len(windows), size):
            part = windows[first:first + size]
            fill = np.zeros((size - len(part), *part.shape[1:]), np.float32)
            full = np.concatenate([part, fill]) if len(fill) else part
            (logits,) = self.session.run([self.output], {"image": full[..., :1], "guide": full[..., 1:]})
            out.append(np.asarray(logits[:len(part)], np.float32))
        return np.concatenate(out).transpose(0, 4, 2, 3, 1)
