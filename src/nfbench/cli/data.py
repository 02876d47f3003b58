"""`nfbench data check|split|slice` (owned by the data-tools work)."""

from nfbench.cli._app import data_app  # noqa: F401

