"""Routes remembered between runs (`pos3._routes`): what the fingerprint covers, which credentials
are taken without botocore, and the file itself. No server: the fingerprint's files are given."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from pos3 import Profile
from pos3._clients import _UNSIGNED, _credentials
from pos3._routes import Frozen, Preset, RouteMemo, env_credentials, fingerprint

ENV = {"AWS_ENDPOINT_URL": "http://127.0.0.1:9000", "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
       "AWS_SECRET_ACCESS_KEY": "s3cr3t-value", "AWS_CONFIG_FILE": "/cfg", "AWS_SHARED_CREDENTIALS_FILE": "/creds",
       "HOME": "/home/u"}
PRESET = Preset("env", True, True, None, "/etc/ssl/certs/ca.pem", {"b": ("http://127.0.0.1:9000/b/", "us-east-1")})


def _files(**contents: bytes) -> object:
    return lambda path: contents.get(path.strip("/"), b"")


def _key(env: dict[str, str] = ENV, profile: Profile | None = None, verify: object = None, **files: bytes) -> str:
    return fingerprint(profile, verify, env, _files(**files))  # type: ignore[arg-type]


@pytest.mark.parametrize("change", [
    {"AWS_ENDPOINT_URL": "http://127.0.0.1:9001"},
    {"AWS_REGION": "eu-west-1"},
    {"AWS_PROFILE": "other"},
    {"AWS_ACCESS_KEY_ID": "AKIDOTHER"},
    {"AWS_SESSION_TOKEN": "tok"},  # whether one is set
    {"AWS_REQUEST_CHECKSUM_CALCULATION": "when_required"},
])
def test_the_fingerprint_changes_with_any_aws_setting(change: dict[str, str]) -> None:
    assert _key({**ENV, **change}) != _key()


def test_the_fingerprint_changes_with_the_aws_files_and_the_tls_setting() -> None:
    assert _key(cfg=b"[default]\nregion = eu-west-1\n") != _key()
    assert _key(creds=b"[default]\naws_access_key_id = X\n") != _key()
    assert _key(verify=False) != _key()


def test_the_fingerprint_holds_no_secret_and_does_not_follow_it() -> None:
    # The secret is read from the environment at each run; only whether it is set is part of the key.
    assert _key({**ENV, "AWS_SECRET_ACCESS_KEY": "another"}) == _key()
    assert "s3cr3t" not in _key()


def test_an_isolated_profile_ignores_the_aws_environment() -> None:
    profile = Profile("p", "http://127.0.0.1:9000", access_key="a", secret_key="s")
    assert _key({**ENV, "AWS_REGION": "eu-west-1"}, profile) == _key(profile=profile)
    assert _key(profile=profile) != _key(profile=Profile("p", "http://127.0.0.1:9000", access_key="a",
                                                         secret_key="s", addressing_style="virtual"))


def test_env_credentials_are_read_as_botocore_reads_them() -> None:
    assert env_credentials(ENV) == Frozen("AKIDEXAMPLE", "s3cr3t-value", None)
    assert env_credentials({**ENV, "AWS_SESSION_TOKEN": "t2", "AWS_SECURITY_TOKEN": "t1"}).token == "t1"  # type: ignore[union-attr]
    assert env_credentials({**ENV, "AWS_SECURITY_TOKEN": "", "AWS_SESSION_TOKEN": "t2"}).token == "t2"  # type: ignore[union-attr]
    assert env_credentials({**ENV, "AWS_SECRET_ACCESS_KEY": ""}) is None
    assert env_credentials({**ENV, "AWS_CREDENTIAL_EXPIRATION": "2030-01-01T00:00:00Z"}) is None  # refreshable


def test_credentials_are_taken_without_botocore_only_from_where_botocore_took_them() -> None:
    assert _credentials(None, PRESET, ENV).get_frozen_credentials() == Frozen("AKIDEXAMPLE", "s3cr3t-value", None)
    other = Preset("sso", True, True, None, None, {})
    assert _credentials(None, other, ENV) is None  # SSO, roles...: botocore's
    assert _credentials(None, PRESET, {"AWS_ENDPOINT_URL": "x"}) is None
    keyed = Profile("p", "http://127.0.0.1:9000", access_key="a", secret_key="s", session_token="t")
    explicit = Preset("explicit", True, True, None, None, {})
    assert _credentials(keyed, explicit, {}).get_frozen_credentials() == Frozen("a", "s", "t")
    assert _credentials(keyed, PRESET, {}) is None
    public = Profile("pub", "http://127.0.0.1:9000", public=True)
    assert _credentials(public, Preset(None, True, True, None, None, {}), ENV) is _UNSIGNED
    assert _credentials(public, PRESET, ENV) is None


def test_the_memo_file_round_trips_merges_and_ignores_damage(tmp_path: Path) -> None:
    path = tmp_path / "routes.json"
    memo = RouteMemo(path)
    memo.put("k1", PRESET)
    memo.save()
    assert RouteMemo(path).get("k1") == PRESET
    # Another process wrote k2 meanwhile: both are kept.
    other = RouteMemo(path)
    second = Preset(None, False, False, True, False, {})
    other.put("k2", second)
    other.save()
    memo.put("k1", Preset("env", True, False, None, None, {}))
    memo.save()
    again = RouteMemo(path)
    assert again.get("k2") == second and again.get("k1") == Preset("env", True, False, None, None, {})
    for damage in (b"{not json", b"[]", json.dumps({"version": 1, "entries": {"k1": {"routes": 3}}}).encode()):
        path.write_bytes(damage)
        assert RouteMemo(path).get("k1") is None


def test_the_memo_is_not_written_where_the_mirror_wrote_nothing(tmp_path: Path) -> None:
    memo = RouteMemo(tmp_path / "absent" / "routes.json")
    memo.put("k", PRESET)
    memo.save()
    assert not (tmp_path / "absent").exists()


def test_a_preset_whose_ca_file_is_gone_is_not_used(tmp_path: Path) -> None:
    path = tmp_path / "routes.json"
    memo = RouteMemo(path)
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    env = {"AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull}
    key, _ = memo.lookup(None, None, env)
    memo.put(key, Preset("env", True, True, None, str(ca), {}))
    memo.save()
    assert RouteMemo(path).lookup(None, None, env)[1] is not None
    ca.unlink()
    assert RouteMemo(path).lookup(None, None, env)[1] is None
