"""Profiles against two S3 "providers": many endpoints and credentials in one job.

Provider A is the shared in-process moto server of conftest (reached through the default
credential chain: ``AWS_ENDPOINT_URL`` and dummy keys). moto keeps its state per process, so
the other providers run in subprocesses, each on its own port of 127.0.0.1:

* ``auth_provider`` enforces signatures and IAM permissions (``/moto-api/reset-auth``): only
  the keys of IAM user ``alice`` work, a wrong secret gets ``SignatureDoesNotMatch``;
* ``open_provider`` checks no credentials and records, per request, whether it was signed and
  whether it carried a flexible checksum header.

moto 5 answers an unsigned request on an auth-enforcing server with a 500 (it reads the missing
``Authorization`` header), so the anonymous (``public=True``) profile is tested against the open
provider, with a public-read bucket policy, and the proof that it is anonymous is that no
request it sent was signed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import selectors
import subprocess
import sys
import traceback
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

import pos3
from pos3 import _profiles
from tests.conftest import local_tree, put, remote_tree

pytestmark = pytest.mark.anyio

# A moto server in its own process: prints its port, serves until stdin closes. Every request is
# recorded as [method, path, signed, checksum-header] and the record is served at /__requests__.
_PROVIDER = r"""
import json, logging, sys, threading
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server

logging.getLogger("werkzeug").setLevel(logging.WARNING)
log, lock = [], threading.Lock()
backend = DomainDispatcherApplication(create_backend_app)

def app(environ, start_response):
    if environ.get("PATH_INFO") == "/__requests__":
        with lock:
            body = json.dumps(log).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]
    signed = environ.get("HTTP_AUTHORIZATION", "").startswith("AWS4-HMAC-SHA256")
    checksum = any(k.startswith("HTTP_X_AMZ_CHECKSUM_") for k in environ)
    with lock:
        log.append([environ.get("REQUEST_METHOD", ""), environ.get("PATH_INFO", ""), signed, checksum])
    return backend(environ, start_response)

server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=MotoRequestHandler)
threading.Thread(target=server.serve_forever, daemon=True).start()
print(server.server_port, flush=True)
sys.stdin.read()
server.shutdown()
"""


@dataclass
class Provider:
    """A moto server in a subprocess, and an admin client that may do anything on it."""

    process: subprocess.Popen[str]
    endpoint: str
    admin: Any
    access_key: str | None = None
    secret_key: str | None = field(default=None, repr=False)

    def requests(self, bucket: str) -> list[tuple[str, str, bool, bool]]:
        """Requests this provider received about ``bucket``: (method, path, signed, checksum)."""
        with urllib.request.urlopen(self.endpoint + "/__requests__", timeout=10) as resp:
            rows = json.loads(resp.read())
        return [(m, p, s, c) for m, p, s, c in rows if p == f"/{bucket}" or p.startswith(f"/{bucket}/")]

    def bucket(self, files: dict[str, bytes] | None = None) -> str:
        name = f"prov-{uuid.uuid4().hex[:12]}"
        self.admin.create_bucket(Bucket=name)
        put(self.admin, name, files or {})
        return name


@contextlib.contextmanager
def _start_provider() -> Iterator[tuple[subprocess.Popen[str], str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POS3_"))}
    proc = subprocess.Popen(
        [sys.executable, "-c", _PROVIDER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            if not sel.select(timeout=60):
                raise RuntimeError("the provider subprocess did not report its port within 60 s")
        line = proc.stdout.readline().strip()
        if not line.isdigit():
            raise RuntimeError(f"the provider subprocess failed to start (printed {line!r})")
        yield proc, f"http://127.0.0.1:{int(line)}"
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


def _client(endpoint: str, service: str = "s3", **kwargs: Any) -> Any:
    kwargs.setdefault("aws_access_key_id", "admin")
    kwargs.setdefault("aws_secret_access_key", "admin")
    return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1",
                        config=Config(retries={"max_attempts": 1}), **kwargs)


@pytest.fixture(scope="module")
def auth_provider() -> Iterator[Provider]:
    """A second provider that checks signatures and IAM permissions; only alice's keys work."""
    with _start_provider() as (proc, endpoint):
        iam = _client(endpoint, "iam")
        iam.create_user(UserName="alice")
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
        iam.put_user_policy(UserName="alice", PolicyName="s3-all", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName="alice")["AccessKey"]
        req = urllib.request.Request(endpoint + "/moto-api/reset-auth", data=b"0", method="POST",
                                     headers={"Content-Type": "text/plain"})
        with urllib.request.urlopen(req, timeout=10):
            pass  # from now on every request is authenticated and authorised
        admin = _client(endpoint, aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"])
        yield Provider(proc, endpoint, admin, key["AccessKeyId"], key["SecretAccessKey"])


@pytest.fixture(scope="module")
def open_provider() -> Iterator[Provider]:
    """A second provider that accepts any request and records which ones were signed."""
    with _start_provider() as (proc, endpoint):
        yield Provider(proc, endpoint, _client(endpoint))


def _register_alice(p: Provider, name: str = "b", **kwargs: Any) -> None:
    pos3.register_profile(name, p.endpoint, access_key=p.access_key, secret_key=p.secret_key, **kwargs)


# ---------------------------------------------------------------------------------------- two providers


async def test_one_job_reads_from_one_provider_and_writes_to_another(
    open_mirror: Any, s3: Any, bucket: str, auth_provider: Provider, cache_root: Path
) -> None:
    put(s3, bucket, {"data/a.csv": b"1,2\n", "data/sub/b.csv": b"3,4\n"})
    out_bucket = auth_provider.bucket()
    _register_alice(auth_provider)
    async with open_mirror() as m:
        data = await m.download(f"s3://{bucket}/data")
        out = await m.upload(f"s3://b@{out_bucket}/results")
        total = sum(len(p.read_bytes()) for p in sorted(Path(data).rglob("*.csv")))
        (Path(out) / "summary.txt").write_text(f"{total}\n")
    assert Path(data) == cache_root.resolve() / "_" / bucket / "data"
    assert Path(out) == cache_root.resolve() / "b" / out_bucket / "results"
    assert remote_tree(auth_provider.admin, out_bucket) == {"results/summary.txt": b"8\n"}
    assert sorted(remote_tree(s3, bucket)) == ["data/a.csv", "data/sub/b.csv"]  # A got nothing written
    assert all(signed for _, _, signed, _ in auth_provider.requests(out_bucket))


async def test_same_url_under_two_profiles_maps_to_two_folders(
    open_mirror: Any, server: Any, s3: Any, auth_provider: Provider, cache_root: Path
) -> None:
    name = auth_provider.bucket({"d/k.txt": b"from B"})
    s3.create_bucket(Bucket=name)  # the very same bucket name on provider A
    put(s3, name, {"d/k.txt": b"from A"})
    _register_alice(auth_provider)
    async with open_mirror() as m:
        a = await m.download(f"s3://{name}/d")
        b = await m.download(f"s3://b@{name}/d")
        # Uploads of one URL under both profiles do not conflict either.
        ua = await m.upload(f"s3://{name}/out")
        ub = await m.upload(f"s3://{name}/out", profile="b")
        (Path(ua) / "o.txt").write_bytes(b"A out")
        (Path(ub) / "o.txt").write_bytes(b"B out")
    assert a != b and ua != ub
    assert local_tree(Path(a)) == {"k.txt": b"from A"}
    assert local_tree(Path(b)) == {"k.txt": b"from B"}
    assert Path(b) == cache_root.resolve() / "b" / name / "d"
    assert remote_tree(s3, name, "out/") == {"out/o.txt": b"A out"}
    assert remote_tree(auth_provider.admin, name, "out/") == {"out/o.txt": b"B out"}


async def test_url_selector_wins_and_is_stripped(
    open_mirror: Any, server: Any, s3: Any, auth_provider: Provider, cache_root: Path
) -> None:
    name = auth_provider.bucket({"k.txt": b"B"})
    s3.create_bucket(Bucket=name)
    put(s3, name, {"k.txt": b"A"})
    pos3.register_profile("a", server.endpoint)  # endpoint only: credentials from the default chain
    _register_alice(auth_provider)
    async with open_mirror() as m:
        got = await m.download(f"s3://b@{name}/k.txt", profile="a")
        listed = await m.ls(f"s3://b@{name}/", profile="a")
    assert Path(got).read_bytes() == b"B"
    assert Path(got) == cache_root.resolve() / "b" / name / "k.txt"
    assert len(listed) == 1 and listed[0].endswith(f"{name}/k.txt")  # listed from B, not A
    paths = {p for _, p, _, _ in auth_provider.requests(name)}
    assert paths and all(p.startswith(f"/{name}") and "@" not in p for p in paths)
    assert server.log.count() == 2  # A: only the two seeding requests, nothing from the mirror


async def test_default_profile_and_the_reserved_default_chain_name(
    open_mirror: Any, server: Any, s3: Any, auth_provider: Provider, cache_root: Path
) -> None:
    name = auth_provider.bucket({"k.txt": b"B"})
    s3.create_bucket(Bucket=name)
    put(s3, name, {"k.txt": b"A"})
    _register_alice(auth_provider)
    root = cache_root.resolve()
    async with open_mirror(default_profile="b") as m:
        by_default = await m.download(f"s3://{name}/k.txt")
        by_name = await m.download(f"s3://{name}/k.txt", profile="_")
        by_url = await m.download(f"s3://_@{name}/k.txt", profile="b")
    assert (Path(by_default), Path(by_default).read_bytes()) == (root / "b" / name / "k.txt", b"B")
    assert (Path(by_name), Path(by_name).read_bytes()) == (root / "_" / name / "k.txt", b"A")
    assert Path(by_url) == Path(by_name)


async def test_inline_profile_object(open_mirror: Any, auth_provider: Provider, cache_root: Path) -> None:
    name = auth_provider.bucket({"k.txt": b"inline"})
    profile = pos3.Profile("inline-b", auth_provider.endpoint, access_key=auth_provider.access_key,
                           secret_key=auth_provider.secret_key)
    async with open_mirror(default_profile=profile) as m:
        got = await m.download(f"s3://{name}/k.txt")
    assert Path(got) == cache_root.resolve() / "inline-b" / name / "k.txt"
    assert Path(got).read_bytes() == b"inline"


# ---------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("remote", "profile", "error", "words"),
    [
        ("s3://{b}/k.txt", "nope", pos3.ProfileError, ["'nope'", "register_profile"]),
        ("s3://nope@{b}/k.txt", None, pos3.ProfileError, ["'nope'"]),
        ("s3://nope@{b}/k.txt", "_", pos3.ProfileError, ["'nope'"]),
        ("s3://@{b}/k.txt", None, pos3.InvalidURLError, ["empty profile"]),
        ("s3://{b}/k.txt", "", pos3.ProfileError, ["Invalid profile"]),
    ],
)
async def test_unknown_or_empty_profile_is_a_hard_error(
    open_mirror: Any, server: Any, s3: Any, bucket: str, remote: str, profile: str | None,
    error: type[Exception], words: list[str],
) -> None:
    put(s3, bucket, {"k.txt": b"default chain would have worked"})
    server.log.clear()
    async with open_mirror() as m:
        with pytest.raises(error) as info:
            await m.download(remote.format(b=bucket), profile=profile)
    assert all(w in str(info.value) for w in words), str(info.value)
    assert server.log.count() == 0  # no silent fallback to the default credentials


async def test_unknown_default_profile_fails_when_the_mirror_is_made(open_mirror: Any) -> None:
    with pytest.raises(pos3.ProfileError, match="'nope'"):
        async with open_mirror(default_profile="nope"):
            pass


SECRET = "wRoNg-SeCrEt-0123456789-abcdefghijklmnopq"


@pytest.mark.parametrize("kind", ["wrong secret", "unknown key"])
async def test_bad_credentials_are_denied_without_leaking_the_secret(
    open_mirror: Any, auth_provider: Provider, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    caplog.set_level(logging.DEBUG, logger="pos3")
    name = auth_provider.bucket({"k.txt": b"secret data"})
    key = auth_provider.access_key if kind == "wrong secret" else "AKIDDOESNOTEXIST0000"
    pos3.register_profile("bad", auth_provider.endpoint, access_key=key, secret_key=SECRET)
    profile = _profiles.resolve_profile("bad")
    assert SECRET not in repr(profile) and SECRET not in str(profile)
    async with open_mirror() as m:
        with pytest.raises(pos3.AccessDeniedError) as down:
            await m.download(f"s3://bad@{name}/k.txt")
        with pytest.raises(pos3.AccessDeniedError) as listing:
            await m.ls(f"s3://{name}/", profile="bad")
    for info in (down, listing):
        assert isinstance(info.value, PermissionError)
        code = "SignatureDoesNotMatch" if kind == "wrong secret" else "InvalidAccessKeyId"
        assert info.value.code == code and name in str(info.value)
        text = "".join(traceback.format_exception(info.value))  # with the botocore cause
        assert SECRET not in text and SECRET not in repr(info.value)
    assert SECRET not in caplog.text


async def test_failed_upload_does_not_leak_the_secret(
    open_mirror: Any, auth_provider: Provider, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="pos3")
    name = auth_provider.bucket()
    pos3.register_profile("bad", auth_provider.endpoint, access_key=auth_provider.access_key, secret_key=SECRET)
    with pytest.raises(pos3.Pos3Error) as info:
        async with open_mirror() as m:
            out = await m.upload(f"s3://bad@{name}/out")
            (Path(out) / "f.txt").write_bytes(b"x")
    assert "".join(traceback.format_exception(info.value)).count(SECRET) == 0
    assert SECRET not in caplog.text
    assert remote_tree(auth_provider.admin, name) == {}


# ---------------------------------------------------------------------------------------- registry file


def _write_registry(tmp_path: Path, body: str, creds: str | None = None) -> Path:
    conf = tmp_path / "conf"
    conf.mkdir(exist_ok=True)
    path = conf / "profiles.toml"
    path.write_text(body, encoding="utf-8")
    if creds is not None:
        (conf / "store.ini").write_text(creds, encoding="utf-8")
    return path


async def test_registry_file_with_a_credentials_file(
    open_mirror: Any, auth_provider: Provider, tmp_path: Path, cache_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = auth_provider.bucket({"m/w.bin": b"weights"})
    path = _write_registry(
        tmp_path,
        f'[profiles.store]\nendpoint = "{auth_provider.endpoint}"\nlocal_name = "store-cache"\n'
        'credentials_file = "store.ini"\n',  # relative: resolved against the registry file
        f"[other]\naws_access_key_id = X\naws_secret_access_key = Y\n\n"
        f"[store]\naws_access_key_id = {auth_provider.access_key}\n"
        f"aws_secret_access_key = {auth_provider.secret_key}\n",
    )
    monkeypatch.setenv("POS3_PROFILES_FILE", str(path))
    monkeypatch.chdir(tmp_path)  # not the registry's folder
    _profiles.reset_registry()
    async with open_mirror() as m:
        got = await m.download(f"s3://store@{name}/m")
        up = await m.upload(f"s3://{name}/up", profile="store")
        (Path(up) / "r.txt").write_bytes(b"result")
    assert Path(got) == cache_root.resolve() / "store-cache" / name / "m"
    assert local_tree(Path(got)) == {"w.bin": b"weights"}
    assert remote_tree(auth_provider.admin, name, "up/") == {"up/r.txt": b"result"}


async def test_code_registration_wins_over_the_file(
    open_mirror: Any, server: Any, s3: Any, auth_provider: Provider, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    name = auth_provider.bucket({"k.txt": b"B"})
    s3.create_bucket(Bucket=name)
    put(s3, name, {"k.txt": b"A"})
    path = _write_registry(
        tmp_path, f'[profiles.x]\nendpoint = "{auth_provider.endpoint}"\ncredentials_file = "store.ini"\n',
        f"[default]\naws_access_key_id = {auth_provider.access_key}\n"
        f"aws_secret_access_key = {auth_provider.secret_key}\n",
    )
    monkeypatch.setenv("POS3_PROFILES_FILE", str(path))
    _profiles.reset_registry()
    async with open_mirror() as m:
        from_file = await m.download(f"s3://x@{name}/k.txt")
        assert Path(from_file).read_bytes() == b"B"
    _profiles.reset_registry()
    pos3.register_profile("x", server.endpoint)
    async with open_mirror() as m:
        from_code = await m.download(f"s3://x@{name}/k.txt")
    assert Path(from_code).read_bytes() == b"A"


async def test_malformed_registry_file_is_reported_with_file_and_field(
    open_mirror: Any, server: Any, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _write_registry(tmp_path, '[profiles.x]\nendpoint = "http://127.0.0.1:1"\nregion = 3\n')
    monkeypatch.setenv("POS3_PROFILES_FILE", str(path))
    _profiles.reset_registry()
    pos3.register_profile("fine", server.endpoint)
    async with open_mirror() as m:
        assert await m.ls(f"s3://fine@{bucket}/") == []  # the file is read only for names code lacks
        with pytest.raises(pos3.ProfileError) as info:
            await m.download(f"s3://x@{bucket}/k")
    assert str(path) in str(info.value) and "[profiles.x] region" in str(info.value)


# ---------------------------------------------------------------------------------------- sessions


async def test_own_credentials_ignore_a_broken_ambient_configuration(
    open_mirror: Any, auth_provider: Provider, monkeypatch: pytest.MonkeyPatch, bucket: str
) -> None:
    name = auth_provider.bucket({"k.txt": b"isolated"})
    _register_alice(auth_provider)
    monkeypatch.setenv("AWS_PROFILE", "does-not-exist")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("AWS_DEFAULT_REGION", "nowhere-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDAMBIENT")
    monkeypatch.setenv("AWS_USE_FIPS_ENDPOINT", "true")
    monkeypatch.setenv("AWS_REQUEST_CHECKSUM_CALCULATION", "bogus")
    before = dict(os.environ)
    async with open_mirror() as m:
        got = await m.download(f"s3://b@{name}/k.txt")
        assert Path(got).read_bytes() == b"isolated"
        # The same environment does break the default chain: the profile was really isolated.
        with pytest.raises(pos3.Pos3Error, match="does-not-exist"):
            await m.download(f"s3://{bucket}/k.txt")
    assert dict(os.environ) == before


async def test_endpoint_only_profile_takes_credentials_from_the_default_chain(
    open_mirror: Any, auth_provider: Provider, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = auth_provider.bucket({"k.txt": b"chain"})
    pos3.register_profile("b-chain", auth_provider.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", auth_provider.access_key or "")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", auth_provider.secret_key or "")
    async with open_mirror() as m:
        got = await m.download(f"s3://b-chain@{name}/k.txt")
    assert Path(got).read_bytes() == b"chain"


async def test_public_profile_reads_anonymously(open_mirror: Any, open_provider: Provider) -> None:
    name = open_provider.bucket({"pub/a.txt": b"open data", "pub/b/c.txt": b"more"})
    policy = {
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow", "Principal": "*", "Action": ["s3:GetObject", "s3:ListBucket"],
            "Resource": [f"arn:aws:s3:::{name}", f"arn:aws:s3:::{name}/*"],
        }],
    }
    open_provider.admin.put_bucket_policy(Bucket=name, Policy=json.dumps(policy))
    seeded = len(open_provider.requests(name))
    pos3.register_profile("anon", open_provider.endpoint, public=True)
    async with open_mirror() as m:  # the ambient environment has (dummy) credentials: not used
        got = await m.download(f"s3://anon@{name}/pub")
    assert local_tree(Path(got)) == {"a.txt": b"open data", "b/c.txt": b"more"}
    sent = open_provider.requests(name)[seeded:]
    assert sent and not any(signed for _, _, signed, _ in sent)


@pytest.mark.parametrize("setting", ["when_supported", "when_required"])
async def test_request_checksum_knob_and_path_style(open_mirror: Any, open_provider: Provider, setting: str) -> None:
    name = open_provider.bucket()
    seeded = len(open_provider.requests(name))
    pos3.register_profile("compat", open_provider.endpoint, access_key="k", secret_key="s", request_checksum=setting)
    async with open_mirror() as m:
        out = await m.upload(f"s3://compat@{name}/out")
        (Path(out) / "f.txt").write_bytes(b"payload")
    assert remote_tree(open_provider.admin, name) == {"out/f.txt": b"payload"}
    puts = [r for r in open_provider.requests(name)[seeded:] if r[0] == "PUT"]
    assert puts and all(p.startswith(f"/{name}/") for _, p, _, _ in puts)  # path-style addressing
    assert all(checksum == (setting == "when_supported") for _, _, _, checksum in puts)


async def test_every_call_takes_a_profile(open_mirror: Any, auth_provider: Provider, cache_root: Path) -> None:
    name = auth_provider.bucket({"s/a.txt": b"a", "p/b.txt": b"b"})
    _register_alice(auth_provider)
    root = cache_root.resolve()
    async with open_mirror() as m:
        plan = await m.plan_download(f"s3://{name}/p", profile="b")
        assert [dst for _, dst in plan.to_copy] == [str(root / "b" / name / "p" / "b.txt")]
        synced = await m.sync(f"s3://{name}/s", profile="b")
        (Path(synced) / "new.txt").write_bytes(b"new")
        up_plan = await m.plan_upload(f"s3://{name}/s", profile="b")
        assert up_plan.to_copy == [(str(root / "b" / name / "s" / "new.txt"), f"s3://{name}/s/new.txt")]
    assert Path(synced) == root / "b" / name / "s"
    assert remote_tree(auth_provider.admin, name, "s/") == {"s/a.txt": b"a", "s/new.txt": b"new"}


async def test_default_chain_honours_aws_profile_and_the_config_files(
    open_mirror: Any, auth_provider: Provider, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cache_root: Path
) -> None:
    name = auth_provider.bucket({"k.txt": b"via ~/.aws"})
    config, creds = tmp_path / "aws-config", tmp_path / "aws-credentials"
    config.write_text(f"[profile alice]\nregion = us-east-1\nendpoint_url = {auth_provider.endpoint}\n")
    creds.write_text(f"[alice]\naws_access_key_id = {auth_provider.access_key}\n"
                     f"aws_secret_access_key = {auth_provider.secret_key}\n")
    for var in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(var)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(creds))
    monkeypatch.setenv("AWS_PROFILE", "alice")
    async with open_mirror() as m:
        got = await m.download(f"s3://{name}/k.txt")
    assert Path(got) == cache_root.resolve() / "_" / name / "k.txt"
    assert Path(got).read_bytes() == b"via ~/.aws"
