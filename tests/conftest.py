"""Shared fixtures: one real S3 server per session, reset between tests, and both facades.

By default the server is moto's own threaded server on 127.0.0.1 with a free port, wrapped by a
WSGI middleware that counts requests, so tests can assert what reached the server.

Any other S3 endpoint can take its place (``nox -s interop`` runs the integration and fault
suites against Ceph RGW this way), selected by environment variables:

``POS3_TEST_ENDPOINT``
    The endpoint URL (``http://`` or ``https://``). Unset: moto.
``POS3_TEST_ACCESS_KEY`` / ``POS3_TEST_SECRET_KEY``
    The keys of a user the suite may use (preferably one of its own). Buckets the tests create
    (through the ``s3`` client) are emptied and deleted before the next test; no other bucket
    is touched.
``POS3_TEST_REGION``
    Region name (default ``us-east-1``).
``POS3_TEST_ADDRESSING``
    ``path`` (default) or ``virtual``; also used for the default credential chain.
``POS3_TEST_CA_BUNDLE``
    A CA bundle for an HTTPS endpoint with a private CA; given to the default chain as
    ``AWS_CA_BUNDLE``.
``POS3_TEST_REQUEST_LOG``
    ``rgw:PATH``: the gateway's log file with one ``beast:`` line per request (Ceph RGW with
    ``debug rgw = 1``). Tests that count requests at the server skip without it. Only requests
    about the buckets the current test created are counted, so pytest-xdist workers sharing
    the server do not count each other's.

Tests that depend on behaviour a server may lack (stored checksums, say) ask `require`, which
probes the server once and skips with the reason when it lacks the capability.
"""

from __future__ import annotations

import collections
import concurrent.futures
import logging
import os
import re
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import boto3
import botocore.exceptions
import pytest
from botocore.config import Config
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


    def mark(self) -> None:
        """Forget what was logged so far (a reset of the server)."""
        self.clear()


class RgwRequestLog(RequestLog):
    """Requests that reached a Ceph RGW, read from its log (``debug rgw = 1``: a ``beast:`` line each).

    The gateway writes a line after it answered, on a thread of its own, so every read first
    sends a marker request and waits (bounded) until the marker is in the file.
    """

    _LINE = re.compile(r' beast: \S+: \S+ - \S+ \[[^\]]*\] "(\S+) (\S+) HTTP/[0-9.]+"')
    _MARKER = "/pos3-log-marker-"

    def __init__(self, path: str, endpoint: str, ca_bundle: str | None, buckets: set[str]) -> None:
        super().__init__()
        self.path = path
        self.endpoint = endpoint
        self._context = ssl.create_default_context(cafile=ca_bundle) if endpoint.startswith("https") else None
        self._offset = 0
        self._buckets = buckets  # the current test's buckets: only requests about them count

    def _sync(self) -> bytes:
        """Everything logged since the last `clear`, once a marker sent now is in the log."""
        token = uuid.uuid4().hex
        req = urllib.request.Request(f"{self.endpoint}{self._MARKER}{token}", method="HEAD")
        try:
            with urllib.request.urlopen(req, timeout=10, context=self._context):
                pass
        except urllib.error.HTTPError:
            pass
        needle = token.encode()
        deadline = time.monotonic() + 15
        while True:
            with open(self.path, "rb") as fh:
                fh.seek(self._offset)
                data = fh.read()
            if needle in data:
                return data
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.path}: a request to {self.endpoint} is not logged after 15 s; "
                                     "is 'debug rgw = 1' set?")
            time.sleep(0.01)

    @property  # type: ignore[override]
    def requests(self) -> list[tuple[str, str, str]]:
        out = []
        for line in self._sync().decode("utf-8", "replace").splitlines():
            m = self._LINE.search(line)
            if m is None:
                continue
            path, _, query = m[2].partition("?")
            if path.split("/", 2)[1] in self._buckets:
                out.append((m[1], urllib.parse.unquote(path), query))
        return out

    @requests.setter
    def requests(self, value: list[tuple[str, str, str]]) -> None:  # RequestLog.__init__ sets it
        pass

    def add(self, method: str, path: str, query: str) -> None:
        raise NotImplementedError("the server writes this log")

    def clear(self) -> None:
        self._offset += len(self._sync())

    def count(self, method: str | None = None, query_contains: str | None = None) -> int:
        return sum(1 for m, _, q in self.requests
                   if (method is None or m == method) and (query_contains is None or query_contains in q))

    def by_method(self) -> collections.Counter[str]:
        return collections.Counter(m for m, _, _ in self.requests)


class NoRequestLog(RequestLog):
    """The server under test has no request log: a test that counts requests skips."""

    REASON = "counts requests at the server, and the endpoint under test has no request log (POS3_TEST_REQUEST_LOG)"

    @property  # type: ignore[override]
    def requests(self) -> list[tuple[str, str, str]]:
        pytest.skip(self.REASON)

    @requests.setter
    def requests(self, value: list[tuple[str, str, str]]) -> None:
        pass

    def clear(self) -> None:
        pytest.skip(self.REASON)

    def count(self, method: str | None = None, query_contains: str | None = None) -> int:
        pytest.skip(self.REASON)

    def by_method(self) -> collections.Counter[str]:
        pytest.skip(self.REASON)

    def mark(self) -> None:
        pass


# What a server may lack, and how a test says it depends on it: see `require`.
CAPABILITIES = {
    "stored_checksums": "stores the additional checksum of an upload (x-amz-checksum-crc32) and returns it",
    "store_in_process": "keeps its objects in this test process (moto's in-process store), where a test can "
                        "rewrite what the server stores, e.g. give an object an ETag that is not its MD5",
    "unchecked_signatures": "accepts a request whose signed headers were changed on the way (it does not check "
                            "SigV4 signatures), so the fault proxy can play a server that ignores If-Match",
}


class CountingMotoServer(ThreadedMotoServer):
    """moto's ThreadedMotoServer, with every request counted."""

    region = "us-east-1"
    ca_bundle: str | None = None
    addressing: str | None = None
    shared = False  # one per pytest-xdist worker: listing every bucket shows only this worker's

    def __init__(self) -> None:
        super().__init__(ip_address="127.0.0.1", port=0, verbose=False)
        self.log: RequestLog = RequestLog()

    def client(self) -> Any:
        return boto3.client("s3", endpoint_url=self.endpoint, region_name=self.region)

    def supports(self, capability: str) -> bool:
        return True  # the reference the suite was written against

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

    @property
    def environ(self) -> dict[str, str]:
        return {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


class ExternalServer:
    """An S3 endpoint given by ``POS3_TEST_*`` (see the module docstring), with moto's test surface."""

    shared = True  # pytest-xdist workers use it side by side: a list of every bucket shows theirs too

    def __init__(self, config_dir: Path) -> None:
        env = os.environ
        self.endpoint = env["POS3_TEST_ENDPOINT"].rstrip("/")
        self.region = env.get("POS3_TEST_REGION") or "us-east-1"
        self.addressing = env.get("POS3_TEST_ADDRESSING") or "path"
        self.ca_bundle = env.get("POS3_TEST_CA_BUNDLE") or None
        try:
            self._keys = (env["POS3_TEST_ACCESS_KEY"], env["POS3_TEST_SECRET_KEY"])
        except KeyError as exc:
            raise pytest.UsageError(f"POS3_TEST_ENDPOINT is set, {exc.args[0]} is not") from None
        self._created: set[str] = set()  # buckets created (through `client`) since the last reset
        spec = env.get("POS3_TEST_REQUEST_LOG") or ""
        if spec.startswith("rgw:"):
            self.log: RequestLog = RgwRequestLog(spec[4:], self.endpoint, self.ca_bundle, self._created)
        elif spec:
            raise pytest.UsageError(f"POS3_TEST_REQUEST_LOG={spec!r}: only 'rgw:PATH' is known")
        else:
            self.log = NoRequestLog()
        # The default chain gets the addressing style from a config file of its own.
        self.config_file = config_dir / "aws-config"
        self.config_file.write_text(f"[default]\ns3 =\n    addressing_style = {self.addressing}\n")
        self._capabilities: dict[str, bool] = {}

    @property
    def environ(self) -> dict[str, str]:
        out = {"AWS_ACCESS_KEY_ID": self._keys[0], "AWS_SECRET_ACCESS_KEY": self._keys[1],
               "AWS_CONFIG_FILE": str(self.config_file)}
        if self.ca_bundle:
            out["AWS_CA_BUNDLE"] = self.ca_bundle
        return out

    def client(self) -> Any:
        """A boto3 client; the buckets it creates are recorded, for `reset` and the request log."""
        client = boto3.client("s3", endpoint_url=self.endpoint, region_name=self.region,
                              aws_access_key_id=self._keys[0], aws_secret_access_key=self._keys[1],
                              verify=self.ca_bundle, config=Config(s3={"addressing_style": self.addressing}))

        def record(params: dict[str, Any], **_: Any) -> None:
            self._created.add(params["Bucket"])

        client.meta.events.register("before-parameter-build.s3.CreateBucket", record)
        return client

    def start(self) -> None:
        pass

    def stop(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Delete every bucket the tests created (objects, uploads and versions first)."""
        s3 = self.client()
        doomed = sorted(self._created)
        self._created.clear()  # a bucket that cannot be deleted fails one test's setup, not every later one
        for name in doomed:
            try:
                s3.head_bucket(Bucket=name)
            except botocore.exceptions.ClientError:
                continue  # never created (the request failed), or deleted by the test
            for upload in s3.list_multipart_uploads(Bucket=name).get("Uploads", ()):
                s3.abort_multipart_upload(Bucket=name, Key=upload["Key"], UploadId=upload["UploadId"])
            for page in s3.get_paginator("list_object_versions").paginate(Bucket=name):
                doomed = [{"Key": v["Key"], "VersionId": v["VersionId"]}
                          for v in [*page.get("Versions", ()), *page.get("DeleteMarkers", ())]]
                if doomed:
                    s3.delete_objects(Bucket=name, Delete={"Objects": doomed, "Quiet": True})
            s3.delete_bucket(Bucket=name)
        self.log.mark()

    def supports(self, capability: str) -> bool:
        """Whether the server has ``capability`` (one of `CAPABILITIES`); probed once."""
        if capability not in self._capabilities:
            self._capabilities[capability] = getattr(self, f"_probe_{capability}")()
        return self._capabilities[capability]

    def _probe_stored_checksums(self) -> bool:
        s3 = self.client()
        name = f"probe-{uuid.uuid4().hex[:12]}"
        s3.create_bucket(Bucket=name)
        try:
            s3.put_object(Bucket=name, Key="probe", Body=b"probe", ChecksumAlgorithm="CRC32")
            return "ChecksumCRC32" in s3.head_object(Bucket=name, Key="probe", ChecksumMode="ENABLED")
        finally:
            s3.delete_object(Bucket=name, Key="probe")
            s3.delete_bucket(Bucket=name)
            self._created.discard(name)

    def _probe_store_in_process(self) -> bool:
        from moto.s3.models import s3_backends

        s3 = self.client()
        name = f"probe-{uuid.uuid4().hex[:12]}"
        s3.create_bucket(Bucket=name)
        try:
            return any(name in regions["global"].buckets for regions in s3_backends.values() if "global" in regions)
        finally:
            s3.delete_bucket(Bucket=name)
            self._created.discard(name)

    def _probe_unchecked_signatures(self) -> bool:
        s3 = self.client()
        name = f"probe-{uuid.uuid4().hex[:12]}"
        s3.create_bucket(Bucket=name)

        def strip(request: Any, **_: Any) -> None:
            del request.headers["If-Match"]  # signed, then removed: what the proxy's strip_if_match does

        try:
            etag = s3.put_object(Bucket=name, Key="probe", Body=b"probe")["ETag"]
            s3.meta.events.register("before-send.s3.HeadObject", strip)
            try:
                s3.head_object(Bucket=name, Key="probe", IfMatch=etag)
            except botocore.exceptions.ClientError as exc:
                if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 403:
                    return False
                raise
            return True
        finally:
            s3.meta.events.unregister("before-send.s3.HeadObject", strip)
            s3.delete_object(Bucket=name, Key="probe")
            s3.delete_bucket(Bucket=name)
            self._created.discard(name)


def own_buckets(names: list[str], bucket: str, server: Any) -> list[str]:
    """The names in a list of every bucket that belong to the test whose bucket is ``bucket``.

    On a server shared by pytest-xdist workers (or people), the others' buckets are listed too;
    the test's own are those named after its bucket. Order is kept.
    """
    return [n for n in names if n.removeprefix("s3://").startswith(bucket)] if server.shared else names


def require(server: Any, capability: str) -> None:
    """Skip the calling test when the server under test lacks ``capability`` (see `CAPABILITIES`)."""
    if not server.supports(capability):
        pytest.skip(f"the server under test lacks a capability this test needs: it {CAPABILITIES[capability]}")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the long tests first: ``slow``, then ``slow(2)`` before it, ``slow(3)`` before that.

    With ``--maxschedchunk 1`` (as ``nox -s tests`` runs it) pytest-xdist hands each worker the
    next test as it frees up, so a long test collected late could start when the others are
    nearly done and run alone at the end. Long ones first, short ones filling the gaps, ends all
    workers at about the same time.
    """
    def weight(item: pytest.Item) -> int:
        mark = item.get_closest_marker("slow")
        return 0 if mark is None else int(mark.args[0]) if mark.args else 1

    items.sort(key=weight, reverse=True)  # stable: collection order within a weight


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CountingMotoServer]:
    """The session's S3 server: moto, or the endpoint of ``POS3_TEST_ENDPOINT``."""
    saved = {k: os.environ.get(k) for k in _ENV}
    server: Any = (ExternalServer(tmp_path_factory.mktemp("aws")) if os.environ.get("POS3_TEST_ENDPOINT")
                   else CountingMotoServer())
    server.start()
    for k in ("AWS_PROFILE", "AWS_CA_BUNDLE"):
        os.environ.pop(k, None)
    os.environ.update(
        AWS_ENDPOINT_URL=server.endpoint,
        AWS_DEFAULT_REGION=server.region,
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        POS3_PROFILES_FILE=os.devnull,
    )
    os.environ.update(server.environ)
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
        "AWS_SHARED_CREDENTIALS_FILE", "POS3_PROFILES_FILE", "AWS_PROFILE", "AWS_CA_BUNDLE")


@pytest.fixture
def server(moto_server: CountingMotoServer) -> Iterator[CountingMotoServer]:
    moto_server.reset()
    _profiles.reset_registry()
    yield moto_server
    _profiles.reset_registry()


@pytest.fixture(scope="session")
def _session_s3(moto_server: CountingMotoServer) -> Any:
    """One boto3 client for the session: making one costs about 60 ms, and clients are thread-safe."""
    return moto_server.client()


@pytest.fixture
def s3(server: CountingMotoServer, _session_s3: Any) -> Any:
    """A plain boto3 client to seed and inspect the bucket."""
    return _session_s3


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


# Requests of the seeding and inspecting helpers in flight at once: one request costs tens of
# milliseconds of round trip on a loaded machine, and a test may seed a thousand objects.
# (botocore keeps 10 connections per client: more threads would only open and drop connections.)
HELPER_THREADS = 8


def _each(fn: Callable[[Any], Any], items: list[Any]) -> list[Any]:
    """``[fn(x) for x in items]``, with up to `HELPER_THREADS` calls at once when there are many."""
    if len(items) <= 2:
        return [fn(x) for x in items]
    with concurrent.futures.ThreadPoolExecutor(max_workers=HELPER_THREADS) as pool:
        return list(pool.map(fn, items))


def put(s3: Any, bucket: str, files: dict[str, bytes]) -> None:
    """Store ``files`` (key -> bytes) in ``bucket``; every object is in place on return."""
    _each(lambda item: s3.put_object(Bucket=bucket, Key=item[0], Body=item[1]), list(files.items()))


def put_many(server: Any, s3: Any, bucket: str, files: dict[str, bytes]) -> None:
    """`put` for a thousand objects and more (a listing past one page), at a fraction of the cost.

    When the server keeps its store in this process (moto), the objects go straight into it: a PUT
    through HTTP costs about 15 ms of CPU (client and server), 15 s for the 1001 keys of a
    pagination test. Another server gets ordinary PUTs. Either way the code under test lists and
    reads them over HTTP, like any other object.
    """
    if not server.supports("store_in_process"):
        put(s3, bucket, files)
        return
    from moto.s3.models import s3_backends

    backend = next(iter(s3_backends.values()))["global"]
    for key, data in files.items():
        backend.put_object(bucket, key, data)


def remote_tree(s3: Any, bucket: str, prefix: str = "") -> dict[str, bytes]:
    keys = [obj["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            for obj in page.get("Contents", ())]
    bodies = _each(lambda key: s3.get_object(Bucket=bucket, Key=key)["Body"].read(), keys)
    return dict(zip(keys, bodies, strict=True))


def local_tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


async def wait_for(predicate: Callable[[], bool], timeout: float = 20.0, step: float = 0.05) -> None:
    """Poll ``predicate`` until it holds, failing after ``timeout`` seconds."""
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(step)

