"""Run store, aggregation, statistics, figures and the report."""
