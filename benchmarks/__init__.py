"""Benchmarks: abflow's metric step and end-to-end run against a hand-written reference query."""
