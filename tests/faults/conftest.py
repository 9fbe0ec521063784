"""Fixtures of the fault tests: a fault-injection proxy in front of the S3 server under test."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest

import pos3
from tests.conftest import CountingMotoServer
from tests.faults.proxy import FaultProxy, Scenario

# Small sizes so ranged downloads and multipart uploads happen with small test objects
# (moto wants parts of at least 5 MiB, except the last one).
SMALL = {
    "part_size": 5 << 20,
    "multipart_threshold": 5 << 20,
    "ranged_threshold": 256 << 10,
}


@pytest.fixture
def proxy(server: CountingMotoServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultProxy]:
    """A running proxy to the S3 server; pos3 clients (default profile) go through it."""
    p = FaultProxy(server.endpoint, Scenario(seed=7), upstream_ca=server.ca_bundle).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", p.url)
    try:
        yield p
    finally:
        p.stop()


def fault_mirror(cache_root: Any, *, part_size: int | None = None, **kwargs: Any) -> pos3.AsyncMirror:
    """An `AsyncMirror` with short timeouts and small transfer sizes for fault tests."""
    kwargs.setdefault("show_progress", False)
    kwargs.setdefault("connect_timeout", 5.0)
    kwargs.setdefault("read_timeout", 5.0)
    kwargs.setdefault("max_workers", 4)
    m = pos3.amirror(cache_root=cache_root, **kwargs)
    sizes = dict(SMALL)
    if part_size is not None:
        sizes["part_size"] = part_size
        sizes["download_part_size"] = part_size
    m._options = dataclasses.replace(m._options, **sizes)  # test-only: small parts without huge objects
    return m
