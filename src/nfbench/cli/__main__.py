"""``python -m nfbench.cli``: the same as the ``nfbench`` command."""

from nfbench.cli import app

app(prog_name="nfbench")
