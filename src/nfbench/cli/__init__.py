"""The ``nfbench`` command line: thin commands over library functions.

Each command group lives in its own module and registers itself on the apps defined in
:mod:`nfbench.cli._app`; importing this package wires them together.
"""

from nfbench.cli._app import app, data_app
from nfbench.cli import data, demo, evaluate, export, grid, models, phantom, report, train  # noqa: F401  (modules register their commands)

__all__ = ["app", "data_app"]
