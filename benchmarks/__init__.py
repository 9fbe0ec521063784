"""Benchmarks of pos3 against its peers, each client run as its own process against a local moto server.

Run everything with ``nox -s bench`` (or ``python -m benchmarks --help`` from the repository root).
"""
