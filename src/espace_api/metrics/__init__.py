"""Prometheus metrics (prometheus-client): the counters and the `/metrics` route."""
