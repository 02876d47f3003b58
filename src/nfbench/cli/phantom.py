"""`nfbench data phantom` (owned by the phantom work)."""

from nfbench.cli._app import data_app  # noqa: F401

