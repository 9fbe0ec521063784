"""A small HTTP-aware fault-injection proxy for the fault tests.

It listens on 127.0.0.1, forwards HTTP/1.1 to one upstream (the S3 server under test: plain, or
TLS with ``upstream_ca``; it can also serve TLS itself with ``server_ssl``) and, for each
request, asks a seeded `Scenario` what to do: pass it through, reset the connection (before the
request reaches the server, or after the server answered: ``drop``), answer a
synthetic error (503 SlowDown, 500, 403...), cut the response body short at half (with a reset:
``truncate``; with a clean FIN: ``cut``), flip one byte of it (or of the request body:
``flip_request``), slow it down, stall forever (before answering: ``stall``; after half the
body: ``stall_half``), hold the response (``hold``) or the request (``hold_request``) until
the test releases it, or forward the request without its ``If-Match`` header
(``strip_if_match``: a server that ignores it).

`FaultProxy.outage` opens a window of unavailability once a number of body bytes went through:
every connection is reset (new ones and those in flight), or every request is answered
``503 SlowDown``, for that many seconds; then the server is back.

It parses request lines, headers and bodies (Content-Length or chunked) and response status,
headers and body length, so faults land exactly where the scenario says. It runs its own event
loop on a daemon thread, keeps a log of what it did, bounds every read (header size, idle time)
and is stopped, with every connection closed, by `stop()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import re
import socket
import ssl
import struct
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

__all__ = ["Action", "Entry", "FaultProxy", "Request", "Rule", "Scenario"]

MAX_HEAD = 64 * 1024
IDLE_TIMEOUT = 60.0
CHUNK = 16 * 1024

ACTIONS = ("pass", "reset", "drop", "status", "truncate", "cut", "flip", "flip_request", "latency", "stall",
           "stall_half", "hold", "hold_request", "strip_if_match", "hold_strip")


@dataclass(frozen=True)
class Request:
    """What the proxy saw of one request."""

    method: str
    path: str
    query: str
    headers: dict[str, str]

    @property
    def is_list(self) -> bool:
        return self.method == "GET" and "list-type" in self.query

    @property
    def is_object_get(self) -> bool:
        return self.method == "GET" and not self.query.startswith("list-type") and "uploads" not in self.query


@dataclass(frozen=True)
class Action:
    """What to do with one request; ``kind`` is one of `ACTIONS`."""

    kind: str = "pass"
    status: int = 503
    code: str = "SlowDown"
    delay: float = 0.0


PASS = Action()


@dataclass(frozen=True)
class Entry:
    """One logged request and what the proxy did with it."""

    method: str
    path: str
    query: str
    kind: str
    range: str
    agent: str = ""  # the User-Agent header: tells pos3's direct requests from botocore's


@dataclass
class Rule:
    """A fault that applies to matching requests.

    Attributes:
        action: What to do when the rule fires.
        method: Only requests with this method (``None``: any).
        path: Only paths containing this text (an object key, a bucket).
        query: Only queries containing this text (``uploadId``, ``list-type``, ``delete``...).
        ranged: Only requests with (``True``) or without (``False``) a Range header.
        header: Only requests with a header line (``name: value``, the name in lower case) in
            which this regular expression is found, e.g. ``"^x-amz-checksum-"``.
        times: How many times the rule fires in all (``None``: every time).
        per_path: With ``times``, count per path instead of in total.
        probability: Chance that a matching request fires the rule (drawn from the scenario seed).
    """

    action: Action
    method: str | None = None
    path: str | None = None
    query: str | None = None
    ranged: bool | None = None
    header: str | None = None
    times: int | None = None
    per_path: bool = False
    probability: float = 1.0
    fired: dict[str, int] = field(default_factory=dict)

    def matches(self, req: Request) -> bool:
        if self.method is not None and req.method != self.method:
            return False
        if self.path is not None and self.path not in req.path:
            return False
        if self.query is not None and self.query not in req.query:
            return False
        if self.header is not None and not any(re.search(self.header, f"{k}: {v}") for k, v in req.headers.items()):
            return False
        return self.ranged is None or ("range" in req.headers) == self.ranged

    def try_fire(self, req: Request, rng: random.Random) -> bool:
        if not self.matches(req):
            return False
        slot = req.path if self.per_path else ""
        if self.times is not None and self.fired.get(slot, 0) >= self.times:
            return False
        if self.probability < 1.0 and rng.random() >= self.probability:
            return False
        self.fired[slot] = self.fired.get(slot, 0) + 1
        return True


class Scenario:
    """An ordered list of rules and a seeded random source; the first rule that fires wins."""

    def __init__(self, *rules: Rule, seed: int = 0) -> None:
        self.rules = list(rules)
        self.rng = random.Random(seed)
        self._lock = threading.Lock()

    def add(self, rule: Rule) -> Rule:
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()

    def pick(self, req: Request) -> Action:
        with self._lock:
            for rule in self.rules:
                if rule.try_fire(req, self.rng):
                    return rule.action
        return PASS


def _error_body(code: str, path: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>injected by the fault proxy</Message>"
        f"<Resource>{path}</Resource><RequestId>fault-proxy</RequestId></Error>"
    ).encode()


def _parse_head(raw: bytes) -> tuple[str, dict[str, str], list[tuple[str, str]]]:
    lines = raw.decode("latin-1").split("\r\n")
    first = lines[0]
    pairs: list[tuple[str, str]] = []
    for line in lines[1:]:
        if not line:
            continue
        name, _, value = line.partition(":")
        pairs.append((name.strip(), value.strip()))
    return first, {k.lower(): v for k, v in pairs}, pairs


def _build_head(first: str, pairs: list[tuple[str, str]]) -> bytes:
    return (first + "\r\n" + "".join(f"{k}: {v}\r\n" for k, v in pairs) + "\r\n").encode("latin-1")


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST (SO_LINGER 0), like a crashed server or a middlebox."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def _read_head(reader: asyncio.StreamReader) -> bytes | None:
    try:
        return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), IDLE_TIMEOUT)
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise ConnectionError("connection closed inside a message head") from exc
        return None
    except asyncio.LimitOverrunError as exc:
        raise ConnectionError("message head too large") from exc


async def _read_exactly(reader: asyncio.StreamReader, n: int) -> bytes:
    return await asyncio.wait_for(reader.readexactly(n), IDLE_TIMEOUT)


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    """A whole chunked body, kept in its chunked form."""
    out = bytearray()
    for _ in range(1_000_000):
        line = await asyncio.wait_for(reader.readuntil(b"\r\n"), IDLE_TIMEOUT)
        out += line
        size = int(line.split(b";")[0].strip() or b"0", 16)
        if size == 0:
            while True:  # trailers, up to the blank line
                trailer = await asyncio.wait_for(reader.readuntil(b"\r\n"), IDLE_TIMEOUT)
                out += trailer
                if trailer == b"\r\n":
                    return bytes(out)
        out += await _read_exactly(reader, size + 2)
    raise ConnectionError("too many chunks")


class FaultProxy:
    """The proxy: ``start()``, point clients at ``url``, ``stop()``."""

    def __init__(self, upstream: str, scenario: Scenario | None = None, *, upstream_ca: str | None = None,
                 server_ssl: ssl.SSLContext | None = None) -> None:
        parts = urlsplit(upstream)
        tls = parts.scheme == "https"
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or (443 if tls else 80))
        self._upstream_ssl = ssl.create_default_context(cafile=upstream_ca) if tls else None
        self._server_ssl = server_ssl
        self.scenario = scenario or Scenario()
        self.log: list[Entry] = []
        self.gate = threading.Event()
        self._log_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stopped: asyncio.Event | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []  # every connection, both sides: aborted at stop
        self._server: asyncio.AbstractServer | None = None
        self.port = 0
        self.errors: list[BaseException] = []
        self.body_bytes = 0  # response body bytes relayed to clients
        self.connections = 0  # TCP connections accepted (with ``server_ssl``: before the TLS handshake)
        self.request_bytes = 0  # request body bytes relayed to the server
        self._outage: tuple[int, float, str] | None = None
        self._outage_when: Rule | None = None
        self.outage_started: float | None = None  # time.monotonic() when the outage window opened
        self.outages: list[float] = []  # when each outage window opened

    # ------------------------------------------------------------------ control

    @property
    def url(self) -> str:
        return f"{'https' if self._server_ssl else 'http'}://127.0.0.1:{self.port}"

    def start(self) -> FaultProxy:
        self._thread = threading.Thread(target=self._run, name="fault-proxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fault proxy did not start")
        return self

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        self.gate.set()
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._request_stop)
        thread.join(10)
        self._loop = self._thread = None

    def outage(self, seconds: float, *, after_bytes: int = 0, kind: str = "reset",
               when: Rule | None = None) -> None:
        """Once ``after_bytes`` body bytes (either way) went through, be down for ``seconds``:
        ``kind="reset"`` resets every connection, ``kind="slowdown"`` answers every request 503 SlowDown.
        With ``when``, the window opens only at the first request that rule matches (its action is
        ignored), e.g. the first DeleteObjects: ``make_rule("pass", method="POST", query="delete")``."""
        assert kind in ("reset", "slowdown")
        self.outage_started = None
        self._outage_when = when
        self._outage = (after_bytes, seconds, kind) if seconds > 0 else None

    def _down(self, req: Request | None = None) -> str | None:
        """The kind of the outage under way, else ``None``; ``req``: a new request (it may open one)."""
        if self._outage is None:
            return None
        after, seconds, kind = self._outage
        now = time.monotonic()
        if self.outage_started is None:
            if self.body_bytes + self.request_bytes < after:
                return None
            if self._outage_when is not None and (req is None or not self._outage_when.matches(req)):
                return None
            self.outage_started = now
            self.outages.append(now)
        return kind if now < self.outage_started + seconds else None

    def count(self, kind: str | None = None, method: str | None = None, path: str | None = None) -> int:
        with self._log_lock:
            return sum(1 for e in self.log
                       if (kind is None or e.kind == kind) and (method is None or e.method == method)
                       and (path is None or path in e.path))

    # ------------------------------------------------------------------ loop thread

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        finally:
            loop.close()

    def _request_stop(self) -> None:
        assert self._stopped is not None
        self._stopped.set()

    async def _main(self) -> None:
        self._stopped = asyncio.Event()
        server = await asyncio.start_server(self._accept, "127.0.0.1", 0, limit=MAX_HEAD)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            await self._stopped.wait()
        finally:
            server.close()
            for task in list(self._tasks):
                task.cancel()
            if self._tasks:
                await asyncio.wait(self._tasks, timeout=5)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 5)
            # A TLS connection closed gracefully waits for the peer's close_notify (up to 30 s);
            # one still waiting when the loop stops never closes its socket, and its garbage
            # collection later warns (an error in the suite) in whatever test runs then. Abort
            # every connection, and let the loop run the callbacks that close their sockets.
            for writer in self._writers:
                writer.transport.abort()
            for _ in range(3):
                await asyncio.sleep(0)

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)
        if self._server_ssl is not None:
            # Not a byte may reach the plain StreamReader before `start_tls` takes the transport
            # over: a ClientHello read into its buffer is never handed to the TLS layer, and the
            # handshake then hangs until both sides time out (a client that sends its ClientHello
            # at once, before `_serve` gets to run, on a loaded machine). Reading resumes once
            # `loop.start_tls` installed the TLS protocol.
            writer.transport.pause_reading()
        task = asyncio.get_running_loop().create_task(self._serve(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        try:
            if self._server_ssl is not None:
                await asyncio.wait_for(writer.start_tls(self._server_ssl), IDLE_TIMEOUT)
            while True:
                raw = await _read_head(reader)
                if raw is None:
                    return
                first, headers, pairs = _parse_head(raw)
                method, target, _version = first.split(" ", 2)
                if headers.get("expect", "").lower() == "100-continue":
                    writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                    pairs = [(k, v) for k, v in pairs if k.lower() != "expect"]
                    raw = _build_head(first, pairs)
                if "content-length" in headers:
                    body = await _read_exactly(reader, int(headers["content-length"]))
                elif "chunked" in headers.get("transfer-encoding", "").lower():
                    body = await _read_chunked(reader)
                else:
                    body = b""
                self.request_bytes += len(body)
                path, _, query = target.partition("?")
                req = Request(method, path, query, headers)
                down = self._down(req)
                action = self.scenario.pick(req) if down is None else Action(
                    "reset" if down == "reset" else "status", status=503, code="SlowDown")
                with self._log_lock:
                    self.log.append(Entry(method, path, query, action.kind, headers.get("range", ""),
                                          headers.get("user-agent", "")))

                if action.kind == "reset":
                    _reset(writer)
                    return
                if action.kind == "stall":
                    assert self._stopped is not None
                    await self._stopped.wait()
                    return
                if down == "slowdown":
                    with self._log_lock:
                        self.log[-1] = dataclasses.replace(self.log[-1], kind="slowdown")
                if action.kind == "status":
                    payload = _error_body(action.code, path) if method != "HEAD" else b""
                    size = len(_error_body(action.code, path))
                    head = (f"HTTP/1.1 {action.status} Injected\r\nContent-Type: application/xml\r\n"
                            f"Content-Length: {size}\r\nx-amz-request-id: fault-proxy\r\n\r\n").encode()
                    writer.write(head + payload)
                    await writer.drain()
                    continue

                if action.kind == "flip_request" and body:
                    damaged = bytearray(body)
                    damaged[len(body) // 2] ^= 0xFF
                    body = bytes(damaged)
                if action.kind in ("hold_request", "hold_strip"):  # the request waits before it reaches the server
                    await asyncio.get_running_loop().run_in_executor(None, self.gate.wait, IDLE_TIMEOUT)
                if action.kind in ("strip_if_match", "hold_strip"):
                    pairs = [(k, v) for k, v in pairs if k.lower() != "if-match"]
                    raw = _build_head(first, pairs)
                if upstream is None:
                    upstream = await asyncio.wait_for(
                        asyncio.open_connection(*self.upstream, limit=MAX_HEAD, ssl=self._upstream_ssl),
                        IDLE_TIMEOUT)
                    self._writers.append(upstream[1])
                up_reader, up_writer = upstream
                up_writer.write(raw + body)
                await up_writer.drain()
                keep = await self._relay_response(method, up_reader, writer, action)
                if not keep:
                    return
        except (ConnectionError, OSError, asyncio.IncompleteReadError, TimeoutError, ValueError) as exc:
            with self._log_lock:
                self.errors.append(exc)
        finally:
            if upstream is not None:
                upstream[1].close()
            writer.close()

    async def _relay_response(self, method: str, up: asyncio.StreamReader, writer: asyncio.StreamWriter,
                              action: Action) -> bool:
        """Relay one response, applying ``action``; returns whether the connection stays open."""
        raw = await _read_head(up)
        if raw is None:
            raise ConnectionError("upstream closed before answering")
        if action.kind == "drop":  # the server did the work; the client never hears of it
            _reset(writer)
            raise ConnectionError("response dropped on purpose")
        first, headers, _pairs = _parse_head(raw)
        status = int(first.split(" ", 2)[1])
        close = headers.get("connection", "").lower() == "close" or first.startswith("HTTP/1.0")
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            length: int | None = 0
        elif "content-length" in headers:
            length = int(headers["content-length"])
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            length = None
        else:
            length = -1  # until the upstream closes
            close = True

        if action.kind == "hold":
            await asyncio.get_running_loop().run_in_executor(None, self.gate.wait, IDLE_TIMEOUT)
        if action.kind == "latency" and action.delay:
            await asyncio.sleep(action.delay)
        writer.write(raw)

        if length is None:
            body = await _read_chunked(up)
            writer.write(body)
            await writer.drain()
            return not close
        cut = length // 2 if action.kind in ("truncate", "cut", "stall_half") and length > 0 else None
        flip_at = length // 2 if action.kind == "flip" and length > 0 else None
        sent = 0
        while length < 0 or sent < length:
            want = CHUNK if length < 0 else min(CHUNK, length - sent)
            data = await asyncio.wait_for(up.read(want), IDLE_TIMEOUT)
            if not data:
                if length < 0:
                    break
                raise ConnectionError("upstream closed inside a body")
            if self._down() == "reset":
                _reset(writer)
                raise ConnectionError("reset by the outage")
            if cut is not None and sent + len(data) >= cut:
                writer.write(data[: cut - sent])
                await writer.drain()
                self.body_bytes += cut - sent
                if action.kind == "stall_half":  # then silence, the connection kept open
                    assert self._stopped is not None
                    await self._stopped.wait()
                    raise ConnectionError("stalled on purpose")
                if action.kind == "cut":  # a clean FIN after half the promised length
                    writer.close()
                    raise ConnectionError("cut on purpose")
                _reset(writer)
                raise ConnectionError("truncated on purpose")
            if flip_at is not None and sent <= flip_at < sent + len(data):
                buf = bytearray(data)
                buf[flip_at - sent] ^= 0xFF
                data = bytes(buf)
            writer.write(data)
            await writer.drain()
            sent += len(data)
            self.body_bytes += len(data)
            if action.kind == "latency" and action.delay:
                await asyncio.sleep(action.delay)
        return not close


def make_rule(kind: str, **kwargs: object) -> Rule:
    """Shorthand: ``make_rule("status", status=403, code="AccessDenied", path="/b/k")``."""
    action_fields = {k: kwargs.pop(k) for k in ("status", "code", "delay") if k in kwargs}
    return Rule(Action(kind, **action_fields), **kwargs)  # type: ignore[arg-type]

