"""Running experiments: evaluation over datasets, progress, memory measurement."""
