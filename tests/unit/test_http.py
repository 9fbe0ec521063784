"""The HTTP/1.1 client of direct requests (`pos3._http`) against a scripted server on loopback.

The server is a real socket server: each test scripts the bytes it answers (sized, chunked,
cut short, silent, closing kept connections) and the tests check what the client reads, how many
connections it opened, and which error a broken answer gives. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest

from pos3._errors import EndpointError, translate
from pos3._http import BodyCut, Client, ConnectFailed, ReadTimeout
from pos3._policy import Fault, classify

pytestmark = pytest.mark.anyio

Reply = Callable[["Seen", asyncio.StreamWriter], Awaitable[bool]]  # returns whether to keep the connection


@dataclass
class Seen:
    """What the server received: one entry per request, and how many connections it accepted."""

    requests: list[tuple[str, str, dict[str, str], bytes]] = field(default_factory=list)
    connections: int = 0
    open_now: int = 0
    most_open: int = 0


def sized(body: bytes, status: int = 200, extra: str = "") -> Reply:
    async def reply(seen: Seen, w: asyncio.StreamWriter) -> bool:
        w.write(f"HTTP/1.1 {status} X\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode() + body)
        return True
    return reply


@asynccontextmanager
async def serve(*replies: Reply) -> AsyncIterator[tuple[str, Seen]]:
    """A server answering its n-th request with ``replies[n]`` (the last one after that)."""
    seen = Seen()

    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        seen.connections += 1
        seen.open_now += 1
        seen.most_open = max(seen.most_open, seen.open_now)
        try:
            while True:
                try:
                    head = await r.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                line, *rest = head.decode("latin-1").split("\r\n")
                method, target, _ = line.split(" ")
                headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in rest if h)}
                body = await r.readexactly(int(headers.get("content-length", "0")))
                seen.requests.append((method, target, headers, body))
                reply = replies[min(len(seen.requests), len(replies)) - 1]
                keep = await reply(seen, w)
                await w.drain()
                if not keep:
                    return
        finally:
            seen.open_now -= 1
            w.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        server.close()


def client(**kwargs: float) -> Client:
    return Client(limit=int(kwargs.pop("limit", 4)), connect_timeout=5.0, read_timeout=kwargs.pop("read_timeout", 10.0),
                  tls=None, user_agent="pos3/test")


async def fetch(c: Client, url: str, method: str = "GET", body: bytes = b"", piece: int = -1) -> tuple[int, bytes]:
    resp = await c.request(method, url, {}, body)
    async with resp:
        if piece < 0:
            return resp.status, await resp.read()
        parts = []
        while data := await resp.read(piece):
            parts.append(data)
        return resp.status, b"".join(parts)


async def test_sized_answers_come_exact_over_one_kept_connection() -> None:
    async with serve(sized(b"first body"), sized(b"x" * 70_000)) as (url, seen):
        c = client()
        assert await fetch(c, url + "/b/k1") == (200, b"first body")
        assert await fetch(c, url + "/b/k2?x=1", piece=1000) == (200, b"x" * 70_000)
        await c.close()
    assert seen.connections == 1
    assert [(m, t) for m, t, _, _ in seen.requests] == [("GET", "/b/k1"), ("GET", "/b/k2?x=1")]
    assert seen.requests[0][2]["host"] == url.split("//")[1] and seen.requests[0][2]["user-agent"] == "pos3/test"


async def test_a_chunked_answer_is_decoded_and_the_connection_kept() -> None:
    async def chunked(seen: Seen, w: asyncio.StreamWriter) -> bool:
        w.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for part in (b"<List", b"Bucket>" * 300, b"</x>"):
            w.write(f"{len(part):x};ext=1\r\n".encode() + part + b"\r\n")
            await w.drain()
        w.write(b"0\r\nX-Trailer: t\r\n\r\n")
        return True

    async with serve(chunked, sized(b"after")) as (url, seen):
        c = client()
        assert await fetch(c, url + "/b", piece=7) == (200, b"<List" + b"Bucket>" * 300 + b"</x>")
        assert await fetch(c, url + "/b/k") == (200, b"after")
        await c.close()
    assert seen.connections == 1


async def test_a_kept_connection_the_server_closed_is_replaced_and_the_request_sent_again() -> None:
    async def then_close(seen: Seen, w: asyncio.StreamWriter) -> bool:
        await sized(b"one")(seen, w)
        return False  # the server drops the connection after answering, without saying so

    async with serve(then_close, sized(b"two")) as (url, seen):
        c = client()
        assert await fetch(c, url + "/b/1") == (200, b"one")
        for _ in range(200):  # until the client has seen the close (bounded)
            if seen.open_now == 0:
                break
            await asyncio.sleep(0.01)
        assert await fetch(c, url + "/b/2", method="PUT", body=b"payload") == (200, b"two")
        await c.close()
    assert seen.connections == 2
    assert [(m, t, b) for m, t, _, b in seen.requests] == [("GET", "/b/1", b""), ("PUT", "/b/2", b"payload")]


async def test_when_every_kept_connection_was_closed_one_new_connection_serves_the_request() -> None:
    async def then_close(seen: Seen, w: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(0.05)  # both first requests in flight at once: two connections kept
        await sized(b"first")(seen, w)
        return False

    async with serve(then_close, then_close, sized(b"after")) as (url, seen):
        c = client()
        assert await asyncio.gather(fetch(c, url + "/b/1"), fetch(c, url + "/b/2")) == [(200, b"first")] * 2
        for _ in range(200):  # until the client has seen both closes (bounded)
            if seen.open_now == 0:
                break
            await asyncio.sleep(0.01)
        assert await fetch(c, url + "/b/3") == (200, b"after")
        await c.close()
    assert seen.connections == 3 and len(seen.requests) == 3


async def test_a_body_cut_short_is_a_body_fault_naming_the_url() -> None:
    async def cut(seen: Seen, w: asyncio.StreamWriter) -> bool:
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"a" * 40)
        return False

    async with serve(cut) as (url, _seen):
        c = client()
        resp = await c.request("GET", url + "/b/k", {})
        assert await resp.read(40) == b"a" * 40
        with pytest.raises(BodyCut, match="60 bytes") as caught:
            await resp.read(100)
        await c.close()
    assert classify(caught.value, answered=True) is Fault.BODY
    err = translate(caught.value, "s3://b/k")
    assert isinstance(err, EndpointError) and "s3://b/k" in str(err)


async def test_a_silent_server_is_a_read_timeout() -> None:
    async def stall(seen: Seen, w: asyncio.StreamWriter) -> bool:
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        await w.drain()
        await asyncio.sleep(5)
        return False

    async with serve(stall) as (url, _seen):
        c = client(read_timeout=0.3)
        resp = await c.request("GET", url + "/b/k", {})
        assert await resp.read(10) == b"abc"
        with pytest.raises(ReadTimeout) as caught:
            await asyncio.wait_for(resp.read(10), 5)
        await c.close()
    assert isinstance(caught.value, TimeoutError)
    assert "did not answer in time" in str(translate(caught.value, "s3://b/k"))


async def test_a_refused_connection_is_connect_failed() -> None:
    async with serve(sized(b"")) as (url, _seen):
        pass  # closed: nothing listens on that port any more
    c = client()
    with pytest.raises(ConnectFailed) as caught:
        await c.request("GET", url + "/b/k", {})
    assert classify(caught.value, answered=False) is Fault.CONNECTION
    assert "cannot reach the endpoint" in str(translate(caught.value, "s3://b/k"))


async def test_head_has_no_body_and_an_unsized_body_runs_to_the_close() -> None:
    async def unsized(seen: Seen, w: asyncio.StreamWriter) -> bool:
        w.write(b"HTTP/1.1 200 OK\r\n\r\nuntil the end")
        return False

    async with serve(sized(b"", extra="ETag: \"e\"\r\n"), sized(b"ignored"), unsized) as (url, seen):
        c = client()
        resp = await c.request("HEAD", url + "/b/k", {})
        assert resp.status == 200 and resp.headers["etag"] == '"e"' and resp.headers.get("ETAG") == '"e"'
        assert await resp.read() == b""
        resp.release()
        assert await fetch(c, url + "/b/k") == (200, b"ignored")
        assert await fetch(c, url + "/b/u") == (200, b"until the end")
        await c.close()
    assert seen.connections == 1


async def test_connections_are_limited_and_a_large_body_arrives_exact() -> None:
    async def slow(seen: Seen, w: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(0.05)
        await sized(b"ok")(seen, w)
        return True

    payload = bytes(range(256)) * (3 * 4096 + 7)  # over 3 MiB: written in slices
    async with serve(slow) as (url, seen):
        c = client(limit=1)
        results = await asyncio.gather(*(fetch(c, f"{url}/b/{i}", "PUT", payload) for i in range(4)))
        await c.close()
    assert results == [(200, b"ok")] * 4
    assert seen.most_open == 1 and seen.connections == 1
    assert all(body == payload for _, _, _, body in seen.requests)
