"""Shared fixtures: one real moto server per session, reset between tests, and both facades.

The server is moto's own threaded server on 127.0.0.1 with a free port, wrapped by a WSGI
middleware that counts requests, so tests can assert what reached the server.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import boto3
import pytest
from moto.moto_server.threaded_moto_server import ThreadedMotoServer
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server

import pos3
from pos3 import _profiles

logging.getLogger("werkzeug").setLevel(logging.WARNING)


class RequestLog:
    """Requests that reached the server: (method, path, query)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: list[tuple[str, str, str]] = []

    def add(self, method: str, path: str, query: str) -> None:
        with self._lock:
            self.requests.append((method, path, query))

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()

    def count(self, method: str | None = None, query_contains: str | None = None) -> int:
        with self._lock:
            return sum(
                1 for m, _, q in self.requests
                if (method is None or m == method) and (query_contains is None or query_contains in q)
                and not _.startswith("/moto-api")
            )

    def by_method(self) -> collections.Counter[str]:
        with self._lock:
            return collections.Counter(m for m, p, _ in self.requests if not p.startswith("/moto-api"))


class CountingMotoServer(ThreadedMotoServer):
    """moto's ThreadedMotoServer, with every request counted."""

    def __init__(self) -> None:
        super().__init__(ip_address="127.0.0.1", port=0, verbose=False)
        self.log = RequestLog()

    def _server_entry(self) -> None:
        app = DomainDispatcherApplication(create_backend_app)
        log = self.log

        def counting(environ: dict[str, Any], start_response: Any) -> Any:
            log.add(environ.get("REQUEST_METHOD", ""), environ.get("PATH_INFO", ""), environ.get("QUERY_STRING", ""))
            return app(environ, start_response)

        self._server = make_server("127.0.0.1", 0, counting, True, request_handler=MotoRequestHandler)
        self._server_ready_event.set()
        self._server.serve_forever()

    @property
    def endpoint(self) -> str:
        host, port = self.get_host_and_port()
        return f"http://{host}:{port}"

    def reset(self) -> None:
        req = urllib.request.Request(self.endpoint + "/moto-api/reset", method="POST")
        with urllib.request.urlopen(req, timeout=10):
            pass
        self.log.clear()


@pytest.fixture(scope="session")
def moto_server() -> Iterator[CountingMotoServer]:
    server = CountingMotoServer()
    server.start()
    saved = {k: os.environ.get(k) for k in _ENV}
    os.environ.update(
        AWS_ENDPOINT_URL=server.endpoint,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        POS3_PROFILES_FILE=os.devnull,
    )
    os.environ.pop("AWS_PROFILE", None)
    try:
        yield server
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


_ENV = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "AWS_CONFIG_FILE",
        "AWS_SHARED_CREDENTIALS_FILE", "POS3_PROFILES_FILE", "AWS_PROFILE")


@pytest.fixture
def server(moto_server: CountingMotoServer) -> Iterator[CountingMotoServer]:
    moto_server.reset()
    _profiles.reset_registry()
    yield moto_server
    _profiles.reset_registry()


@pytest.fixture
def s3(server: CountingMotoServer) -> Any:
    """A plain boto3 client to seed and inspect the bucket."""
    return boto3.client("s3", endpoint_url=server.endpoint, region_name="us-east-1")


@pytest.fixture
def bucket(s3: Any) -> str:
    name = f"test-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture
def cache_root(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class SyncFacade:
    """Drives `pos3.mirror()` from worker threads, with the same awaitable surface as AsyncMirror."""

    def __init__(self, **kwargs: Any) -> None:
        self._cm = pos3.mirror(**kwargs)

    async def __aenter__(self) -> SyncFacade:
        await anyio.to_thread.run_sync(self._cm.__enter__)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await anyio.to_thread.run_sync(self._cm.__exit__, *exc)

    def __getattr__(self, name: str) -> Callable[..., Any]:
        fn = getattr(pos3, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            return await anyio.to_thread.run_sync(lambda: fn(*args, **kwargs))

        return call


@pytest.fixture(params=["mirror", "amirror"])
def open_mirror(request: pytest.FixtureRequest, cache_root: Path, server: CountingMotoServer
                ) -> Callable[..., Any]:
    """Opens a mirror through one facade: ``async with open_mirror() as m: await m.download(...)``."""
    kind = request.param

    def opener(**kwargs: Any) -> Any:
        kwargs.setdefault("cache_root", cache_root)
        kwargs.setdefault("show_progress", False)
        if kind == "mirror":
            return SyncFacade(**kwargs)
        return pos3.amirror(**kwargs)

    opener.kind = kind  # type: ignore[attr-defined]
    return opener


def put(s3: Any, bucket: str, files: dict[str, bytes]) -> None:
    for key, data in files.items():
        s3.put_object(Bucket=bucket, Key=key, Body=data)


def remote_tree(s3: Any, bucket: str, prefix: str = "") -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", ()):
            out[obj["Key"]] = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
    return out


def local_tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


async def wait_for(predicate: Callable[[], bool], timeout: float = 20.0, step: float = 0.05) -> None:
    """Poll ``predicate`` until it holds, failing after ``timeout`` seconds."""
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(step)

