"""HTTPS with a private CA: a `Profile` with its own keys, the default chain, the CLI, and refusals.

The HTTPS endpoint is the fault proxy serving TLS with a certificate of a CA made for the
session, in front of the server under test (``front``); when the server under test is itself
HTTPS (``POS3_TEST_ENDPOINT=https://...`` with ``POS3_TEST_CA_BUNDLE``, as in ``nox -s
interop``), the same tests also run against it directly (``native``).
"""

from __future__ import annotations

import os
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import pos3
from tests.certs import TlsFiles, make_certificates
from tests.conftest import local_tree, put, remote_tree
from tests.faults.proxy import FaultProxy
from tests.integration.test_cli import run

pytestmark = pytest.mark.anyio

NATIVE = os.environ.get("POS3_TEST_ENDPOINT", "").startswith("https://")


@dataclass(frozen=True)
class Https:
    """An HTTPS endpoint, the CA bundle that trusts it, and the proxy when it is one."""

    url: str
    ca: str
    front: FaultProxy | None


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_certificates(tmp_path_factory.mktemp("tls"))


@pytest.fixture(params=["front", "native"] if NATIVE else ["front"])
def https(request: pytest.FixtureRequest, server: Any, tls_files: TlsFiles, monkeypatch: pytest.MonkeyPatch
          ) -> Iterator[Https]:
    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)  # each test says what it trusts
    if request.param == "native":
        yield Https(server.endpoint, server.ca_bundle, None)
        return
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls_files.cert, tls_files.key)
    front = FaultProxy(server.endpoint, upstream_ca=server.ca_bundle, server_ssl=context).start()
    try:
        yield Https(front.url, str(tls_files.ca), front)
    finally:
        front.stop()


def own_keys(server: Any) -> dict[str, str]:
    return {"access_key": server.environ["AWS_ACCESS_KEY_ID"], "secret_key": server.environ["AWS_SECRET_ACCESS_KEY"]}


async def test_profile_with_its_own_keys_trusts_its_ca_bundle(
    open_mirror: Any, https: Https, server: Any, s3: Any, bucket: str
) -> None:
    put(s3, bucket, {"d/a.txt": b"alpha", "d/sub/b.txt": b"beta" * 1000})
    profile = pos3.Profile("tls", https.url, region=server.region, ca_bundle=https.ca, **own_keys(server))
    async with open_mirror(default_profile=profile) as m:
        got = await m.download(f"s3://{bucket}/d")
        out = await m.upload(f"s3://{bucket}/out")
        (Path(out) / "r.txt").write_bytes(b"result")
    assert local_tree(Path(got)) == {"a.txt": b"alpha", "sub/b.txt": b"beta" * 1000}
    assert remote_tree(s3, bucket, "out/") == {"out/r.txt": b"result"}


async def test_isolated_profile_honours_aws_ca_bundle(
    open_mirror: Any, https: Https, server: Any, s3: Any, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    put(s3, bucket, {"k.txt": b"via AWS_CA_BUNDLE"})
    monkeypatch.setenv("AWS_CA_BUNDLE", https.ca)
    profile = pos3.Profile("tls", https.url, region=server.region, **own_keys(server))
    async with open_mirror() as m:
        got = await m.download(f"s3://{bucket}/k.txt", profile=profile)
    assert Path(got).read_bytes() == b"via AWS_CA_BUNDLE"


async def test_default_chain_with_aws_ca_bundle(
    open_mirror: Any, https: Https, s3: Any, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    put(s3, bucket, {"k.txt": b"default chain"})
    monkeypatch.setenv("AWS_ENDPOINT_URL", https.url)
    monkeypatch.setenv("AWS_CA_BUNDLE", https.ca)
    async with open_mirror() as m:
        got = await m.download(f"s3://{bucket}/k.txt")
        out = await m.upload(f"s3://{bucket}/out")
        (Path(out) / "r.txt").write_bytes(b"back")
    assert Path(got).read_bytes() == b"default chain"
    assert remote_tree(s3, bucket, "out/") == {"out/r.txt": b"back"}


async def test_refused_certificate_fails_at_once_and_names_the_settings(
    open_mirror: Any, https: Https, server: Any, s3: Any, bucket: str, cache_root: Path
) -> None:
    if https.front is None:
        pytest.skip("counts connections at the TLS front")
    put(s3, bucket, {"k.txt": b"x"})
    profile = pos3.Profile("tls", https.url, region=server.region, **own_keys(server))  # trusts only public CAs
    async with open_mirror(max_attempts=10) as m:
        with pytest.raises(pos3.EndpointError) as info:
            await m.ls(f"s3://{bucket}/", profile=profile)  # one request, so one connection
        # No retries: ten attempts would be ten connections. (A second connection used to show up
        # under load: the front lost a ClientHello sent before it started TLS, the handshake hung
        # until the connect timeout, and that timeout was retried, rightly. The front no longer
        # loses it: see test_front_answers_a_client_hello_sent_at_once.)
        assert https.front.connections == 1
        message = str(info.value)
        for setting in ("ca_bundle", "--ca-bundle", "AWS_CA_BUNDLE", "verify=False", "--no-verify-ssl"):
            assert setting in message
        assert "certificate" in message and bucket in message and https.url in message
        with pytest.raises(pos3.EndpointError, match="certificate"):
            await m.download(f"s3://{bucket}/k.txt", profile=profile)
    assert https.front.count() == 0  # nothing got through
    assert not (cache_root / "tls" / bucket / "k.txt").exists()


async def test_verify_off_only_when_asked(open_mirror: Any, https: Https, server: Any, s3: Any, bucket: str) -> None:
    put(s3, bucket, {"k.txt": b"unchecked"})
    profile = pos3.Profile("lab", https.url, region=server.region, verify=False, **own_keys(server))
    async with open_mirror() as m:
        got = await m.download(f"s3://{bucket}/k.txt", profile=profile)
    assert Path(got).read_bytes() == b"unchecked"


async def test_missing_ca_bundle_file_is_named(open_mirror: Any, https: Https, server: Any, tmp_path: Path) -> None:
    profile = pos3.Profile("tls", https.url, region=server.region, ca_bundle=str(tmp_path / "nope.pem"),
                           **own_keys(server))
    with pytest.raises(pos3.ProfileError, match=r"Profile 'tls': ca_bundle: CA bundle .*nope.pem is not a readable"):
        async with open_mirror() as m:
            await m.ls("s3://bucket/", profile=profile)



async def test_mirror_ca_bundle_wins_over_the_profiles(
    open_mirror: Any, https: Https, server: Any, s3: Any, bucket: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    put(s3, bucket, {"k.txt": b"the mirror's CA"})
    other = make_certificates(tmp_path / "other").ca  # a CA that signed nothing the endpoint shows
    monkeypatch.setenv("AWS_CA_BUNDLE", str(other))
    profile = pos3.Profile("tls", https.url, region=server.region, ca_bundle=other, **own_keys(server))
    async with open_mirror(ca_bundle=Path(https.ca)) as m:
        got = await m.download(f"s3://{bucket}/k.txt", profile=profile)
        out = await m.upload(f"s3://{bucket}/out", profile=profile)
        (Path(out) / "r.txt").write_bytes(b"back")
    assert Path(got).read_bytes() == b"the mirror's CA"
    assert remote_tree(s3, bucket, "out/") == {"out/r.txt": b"back"}


async def test_mirror_verify_false_turns_checks_off(
    open_mirror: Any, https: Https, server: Any, s3: Any, bucket: str
) -> None:
    put(s3, bucket, {"k.txt": b"unchecked"})
    profile = pos3.Profile("tls", https.url, region=server.region, **own_keys(server))  # trusts only public CAs
    async with open_mirror(verify=False) as m:
        got = await m.download(f"s3://{bucket}/k.txt", profile=profile)
    assert Path(got).read_bytes() == b"unchecked"


async def test_mirror_tls_arguments_are_checked(open_mirror: Any, https: Https, server: Any, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="ca_bundle has no effect with verify=False"):
        async with open_mirror(ca_bundle=https.ca, verify=False):
            pass
    with pytest.raises(ValueError, match="ca_bundle must be the path of a PEM file"):
        async with open_mirror(ca_bundle=""):
            pass
    profile = pos3.Profile("tls", https.url, region=server.region, **own_keys(server))
    with pytest.raises(pos3.ProfileError, match=r"the mirror's ca_bundle \(--ca-bundle\): CA bundle .*nope.pem"):
        async with open_mirror(ca_bundle=tmp_path / "nope.pem") as m:
            await m.ls("s3://bucket/", profile=profile)

@pytest.mark.slow
def test_cli_ca_bundle_and_no_verify_ssl(https: Https, s3: Any, bucket: str, cache_root: Path) -> None:
    put(s3, bucket, {"d/k.txt": b"cli"})
    env = {"AWS_ENDPOINT_URL": https.url}
    refused = run("download", f"s3://{bucket}/d", cache_root=cache_root, env=env)
    assert refused.returncode == 1 and "--ca-bundle" in refused.stderr, refused.stderr
    for flags in (["--ca-bundle", https.ca], ["--no-verify-ssl"]):
        res = run("download", f"s3://{bucket}/d", *flags, cache_root=cache_root, env=env)
        assert res.returncode == 0, res.stderr
        assert local_tree(Path(res.stdout.strip())) == {"k.txt": b"cli"}
    both = run("download", f"s3://{bucket}/d", "--ca-bundle", https.ca, "--no-verify-ssl", cache_root=cache_root,
               env=env)
    assert both.returncode == 2 and "not allowed with" in both.stderr


def test_front_answers_a_client_hello_sent_at_once(tls_files: TlsFiles) -> None:
    """The TLS front answers a ClientHello that arrives with the connection, before it starts TLS.

    It used to read such a ClientHello into its plain-text buffer, where the TLS layer never saw
    it: the handshake hung until the client's connect timeout (a test then hung, or counted a
    retried connection). A client sending at once is what a loaded machine produces by chance;
    here it is made on purpose, a few times.
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls_files.cert, tls_files.key)
    client = ssl.create_default_context(cafile=str(tls_files.ca))
    front = FaultProxy("http://127.0.0.1:9", server_ssl=context).start()  # never reaches its upstream
    try:
        for _ in range(5):
            incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
            tls = client.wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")
            with pytest.raises(ssl.SSLWantReadError):
                tls.do_handshake()
            hello = outgoing.read()
            with socket.create_connection(("127.0.0.1", front.port), timeout=30) as sock:
                sock.sendall(hello)  # before the front has even accepted the connection
                answer = sock.recv(65536)  # a bound, not a threshold: the answer takes milliseconds
            assert answer[:1] == b"\x16", answer[:16]  # a TLS handshake record: the ServerHello
    finally:
        front.stop()
