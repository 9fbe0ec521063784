"""A moto S3 server in its own process on 127.0.0.1 that counts the requests it serves.

Run as ``python -m benchmarks.server`` (prints ``PORT <n>`` once listening). Besides S3 it answers
``GET /__bench__/counts``: a JSON object of cumulative request counts by kind (LIST, GET, HEAD, PUT,
PUT_PART, MPU, DELETE, OTHER). The benchmark reads it before and after each client process; the
difference is what that client sent.

Connections are kept alive between requests (HTTP/1.1), as S3 and every production server keep
them: werkzeug's development server, which moto uses, closes each one after its response, which
would make every client pay a TCP connect per request. `KeepAliveHandler` drops that
``Connection: close`` and drains whatever the request body the application left unread, so the
next request on the connection starts at its request line. A request with a chunked body, or an
HTTP/1.0 one, still closes its connection.

``PUT /__bench__/latency?ms=N`` sets a fixed first-byte latency: every S3 request is answered N ms
after it arrived. The delay is a ``time.sleep`` in the request's own server thread (werkzeug runs
one thread per request), so it costs no CPU and requests in flight overlap their waits, as they
would against a distant server. ``ms=0`` turns it off.
"""

from __future__ import annotations

import collections
import io
import json
import logging
import os
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from typing import Any

COUNTS_PATH = "/__bench__/counts"
LATENCY_PATH = "/__bench__/latency"
KINDS = ("LIST", "GET", "HEAD", "PUT", "PUT_PART", "MPU", "DELETE", "OTHER")


def classify(method: str, host: str, path: str, query: str) -> str:
    """The kind of one S3 request, from its method, Host header, path and query string."""
    host_name = host.split(":", 1)[0]
    if host_name in ("127.0.0.1", "localhost") or not host_name:
        parts = path.lstrip("/").split("/", 1)
        has_key = len(parts) == 2 and parts[1] != ""
    else:  # virtual-hosted style: the bucket is in the Host header
        has_key = path.strip("/") != ""
    if method == "GET":
        if has_key:
            return "GET"
        return "LIST" if ("list-type" in query or "prefix" in query or "marker" in query or not query) else "OTHER"
    if method == "HEAD":
        return "HEAD" if has_key else "OTHER"
    if method == "PUT" and has_key:
        return "PUT_PART" if "partNumber" in query else "PUT"
    if method == "POST":
        if "delete" in query:
            return "DELETE"
        if "uploads" in query or "uploadId" in query:
            return "MPU"
    if method == "DELETE":
        return "MPU" if "uploadId" in query else "DELETE"
    return "OTHER"


def _app() -> Callable[[dict[str, Any], Any], Iterable[bytes]]:
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    app = DomainDispatcherApplication(create_backend_app)
    counts: collections.Counter[str] = collections.Counter()
    lock = threading.Lock()
    latency = [0.0]  # seconds before each S3 request is handled

    def counting(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == COUNTS_PATH:
            with lock:
                body = json.dumps(dict(counts)).encode()
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]
        if path == LATENCY_PATH:
            query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
            latency[0] = max(0.0, float(query.get("ms", ["0"])[0]) / 1000)
            start_response("204 No Content", [("Content-Length", "0")])
            return []
        if not path.startswith("/moto-api"):
            kind = classify(environ.get("REQUEST_METHOD", ""), environ.get("HTTP_HOST", ""), path,
                            environ.get("QUERY_STRING", ""))
            with lock:
                counts[kind] += 1
            delay = latency[0]
            if delay:
                time.sleep(delay)  # this request's own thread: no CPU, other requests go on
        return app(environ, start_response)

    return counting


class _Body(io.RawIOBase):
    """A request body limited to its Content-Length; `drain` reads what the application left."""

    def __init__(self, raw: Any, length: int) -> None:
        super().__init__()
        self._raw = raw
        self.left = length

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        if self.left <= 0:
            return 0
        view = memoryview(buf)[: self.left]
        n = self._raw.readinto(view) or 0
        self.left -= n
        if n == 0:
            self.left = 0  # the client went away
        return n

    def drain(self) -> None:
        buf = bytearray(1 << 16)
        while self.left > 0 and self.readinto(buf):
            pass


class _Guard:
    """The connection's reader as werkzeug sees it: reads nothing once the response is on its way.

    After each response werkzeug reads whatever else arrives on the socket within 10 ms and throws
    it away (it assumes the connection closes); on a kept-alive connection that would be the next
    request.
    """

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self.done = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.raw, name)

    def read(self, n: int = -1) -> bytes:
        return b"" if self.done else bytes(self.raw.read(n))

    def readline(self, n: int = -1) -> bytes:
        return b"" if self.done else bytes(self.raw.readline(n))

    def readinto(self, buf: Any) -> int:
        return 0 if self.done else int(self.raw.readinto(buf))


def _handler() -> type:
    from moto.moto_server.werkzeug_app import MotoRequestHandler

    class KeepAliveHandler(MotoRequestHandler):  # type: ignore[misc]
        """moto's handler, keeping HTTP/1.1 connections open between requests."""

        _body: _Body | None = None
        _guard: _Guard | None = None

        def run_wsgi(self) -> None:
            raw = self.rfile
            self._guard = _Guard(raw)
            self.rfile = self._guard
            try:
                super().run_wsgi()
            finally:
                self.rfile = raw
                self._guard = None

        def make_environ(self) -> dict[str, Any]:
            environ: dict[str, Any] = super().make_environ()
            self._body = None
            if not environ.get("wsgi.input_terminated") and self._guard is not None:  # not chunked
                self._body = _Body(self._guard.raw, int(environ.get("CONTENT_LENGTH") or 0))
                environ["wsgi.input"] = io.BufferedReader(self._body)
            return environ

        def send_header(self, keyword: str, value: str) -> None:
            keep = (keyword.lower() == "connection" and value.lower() == "close" and self._body is not None
                    and self._guard is not None and self.request_version == "HTTP/1.1"
                    and self.headers.get("Connection", "").lower() != "close")
            if keep:
                assert self._body is not None and self._guard is not None
                self._body.drain()
                self._guard.done = True
                return  # no "Connection: close": http.server reads the next request on this socket
            super().send_header(keyword, value)

    return KeepAliveHandler


def serve() -> None:
    """Serve until killed; print ``PORT <n>`` on stdout once listening."""
    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = make_server("127.0.0.1", 0, _app(), threaded=True, request_handler=_handler())
    server.socket.listen(1024)  # clients that open 256 connections at once (s5cmd) are not refused
    print(f"PORT {server.port}", flush=True)
    server.serve_forever()


class MotoProcess:
    """Starts `serve` in a child process and reads its request counts."""

    name = "moto"
    access_key = secret_key = "testing"
    region = "us-east-1"
    counts_requests = True
    can_delay = True

    def __init__(self, python: str = sys.executable, log_path: str | None = None) -> None:
        self._python = python
        self._log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> MotoProcess:
        err = open(self._log_path or os.devnull, "ab")  # noqa: SIM115 - lives as long as the child
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        self._proc = subprocess.Popen([self._python, "-m", "benchmarks.server"], cwd=root, stdout=subprocess.PIPE,
                                      stderr=err, env=env)
        err.close()
        assert self._proc.stdout is not None
        deadline = time.monotonic() + timeout
        line = self._proc.stdout.readline().decode().strip()  # blocks until the child prints or exits
        if not line.startswith("PORT ") or time.monotonic() > deadline:
            self.stop()
            raise RuntimeError(f"the moto server did not start (said {line!r}); see {self._log_path}")
        self.port = int(line.split()[1])
        return self

    def counts(self) -> dict[str, int]:
        with urllib.request.urlopen(self.endpoint + COUNTS_PATH, timeout=30) as resp:
            data: dict[str, int] = json.loads(resp.read())
        return data

    def set_latency(self, ms: float) -> None:
        """Answer every S3 request ``ms`` milliseconds after it arrived (0: at once)."""
        req = urllib.request.Request(f"{self.endpoint}{LATENCY_PATH}?ms={ms:g}", method="PUT")
        with urllib.request.urlopen(req, timeout=30):
            pass

    def rss_mib(self) -> float | None:
        if self._proc is None:
            return None
        try:
            with open(f"/proc/{self._proc.pid}/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) / 1024
        except OSError:
            return None
        return None

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)
        if proc.stdout is not None:
            proc.stdout.close()


class ExternalEndpoint:
    """A server the benchmark did not start (e.g. Ceph RGW): no request counts, no injected latency."""

    counts_requests = False
    can_delay = False

    def __init__(self, endpoint: str, access_key: str, secret_key: str, region: str = "us-east-1",
                 name: str = "") -> None:
        self.endpoint = endpoint.rstrip("/")
        self.access_key, self.secret_key, self.region = access_key, secret_key, region
        self.name = name or self.endpoint

    def start(self) -> ExternalEndpoint:
        return self

    def counts(self) -> dict[str, int]:
        return {}

    def set_latency(self, ms: float) -> None:
        if ms:
            raise RuntimeError(f"{self.name}: latency can only be injected into the benchmark's own moto server")

    def rss_mib(self) -> float | None:
        return None

    def stop(self) -> None:
        return None


Endpoint = MotoProcess | ExternalEndpoint


def diff_counts(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """Requests between two `MotoProcess.counts` readings, by kind (zero kinds left out)."""
    out = {k: after.get(k, 0) - before.get(k, 0) for k in sorted(set(before) | set(after))}
    return {k: v for k, v in out.items() if v}


if __name__ == "__main__":
    serve()
