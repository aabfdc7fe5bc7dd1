"""Benchmark of the service against a seed-style baseline and an HTTP floor.

`python -m bench` starts the three servers on loopback, drives each with an async httpx client at
several concurrencies, and writes one table (markdown and JSON) to `bench/results/`. See
`python -m bench --help`.
"""
