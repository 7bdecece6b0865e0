"""Benchmarks (make bench): load scenarios against a real server over loopback."""
