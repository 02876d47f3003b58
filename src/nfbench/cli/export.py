"""`nfbench export dins` and `nfbench convert dins-onnx-to-torch`: DINs weights between PyTorch and ONNX."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from nfbench.cli._app import app, fail, stdout

__all__ = ["convert_app", "convert_dins_command", "export_app", "export_dins_command"]

export_app = typer.Typer(help="Export model weights to other formats (ONNX).", no_args_is_help=True, rich_markup_mode=None)
convert_app = typer.Typer(help="Convert weights of other formats into nfbench's PyTorch models.", no_args_is_help=True,
                          rich_markup_mode=None)
app.add_typer(export_app, name="export")
app.add_typer(convert_app, name="convert")

_EXPORT_OPTIONS = ("base_filters", "max_filters", "roi")


@export_app.command("dins")
def export_dins_command(
    weights: Annotated[Path, typer.Option("--weights", help="DINs state dict (what `dins` loads).")],
    out: Annotated[Path, typer.Option("--out", help="ONNX file to write.")],
    model_option: Annotated[list[str] | None, typer.Option(
        "--model-option", "-o",
        help="KEY=VALUE: base_filters, max_filters (the checkpoint's width), roi (window S,R,A; 512,160,10 as the original).",
    )] = None,
) -> None:
    """Write a DINs checkpoint as ONNX in the original signature: image (B,10,512,160,1), guide (B,10,512,160,2) → logits."""
    from nfbench.models.base import ModelError
    from nfbench.models.dins import ROI, DINsModel
    from nfbench.models.dins_onnx import export_onnx
    from nfbench.models.spec import parse_option

    try:
        options = dict(parse_option(o) for o in model_option or [])
    except ValueError as err:
        fail(f"--model-option: {err}")
    unknown = sorted(set(options) - set(_EXPORT_OPTIONS))
    if unknown:
        fail(f"--model-option: unknown option(s) {', '.join(unknown)} (known: {', '.join(_EXPORT_OPTIONS)})")
    roi = options.pop("roi", ROI)
    if not out.parent.is_dir():
        fail(f"{out}: its folder {out.parent} does not exist")
    try:
        model = DINsModel(weights=weights, **options)
        path = export_onnx(model.network, out, roi)
    except (ModelError, ValueError, OSError) as err:
        fail(str(err))
    stdout.print(f"wrote {path} (run it with --model dins-onnx --weights {path})", highlight=False)


@convert_app.command("dins-onnx-to-torch")
def convert_dins_command(
    onnx_file: Annotated[Path, typer.Argument(help="DINs ONNX file: ours (`nfbench export dins`) or the original's TensorFlow export (tf2onnx).")],
    out: Annotated[Path, typer.Option("--out", help="PyTorch state dict to write (what `dins` loads).")],
) -> None:
    """Read a DINs ONNX file's initializers into the PyTorch DINs and save its state dict."""
    import torch

    from nfbench.models.base import ModelError
    from nfbench.models.dins_onnx import network_from_onnx, onnx_window

    if not out.parent.is_dir():
        fail(f"{out}: its folder {out.parent} does not exist")
    try:
        network, widths = network_from_onnx(onnx_file)
        torch.save(network.state_dict(), out)
    except (ModelError, OSError) as err:
        fail(str(err))
    window = onnx_window(onnx_file)
    flags = " ".join([*(f"-o {k}={v}" for k, v in widths.items()),
                      *([f"-o roi={','.join(map(str, window))}"] if window else [])])
    stdout.print(f"wrote {out} (run it with --model dins --weights {out} {flags}, and the -o spacing and "
                 "guide_sigma it was trained with: the file does not record them)", highlight=False)
