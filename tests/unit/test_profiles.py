"""Profile validation, registration, lookup and the registry file (no network)."""

from __future__ import annotations

import dataclasses
import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest

import pos3
from pos3 import _profiles
from pos3._profiles import Profile, profiles_file, register_profile, resolve_profile

SECRET = "sEcReT-value-0123456789abcdefghijklmnop"
EP = "http://127.0.0.1:9000"


@pytest.fixture(autouse=True)
def clean_registry(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    monkeypatch.setenv("POS3_PROFILES_FILE", str(tmp_path / "absent.toml"))
    _profiles.reset_registry()
    yield
    _profiles.reset_registry()


# ---------------------------------------------------------------------------------------- Profile


def test_profile_is_frozen_and_positional_like_the_issue_says() -> None:
    p = Profile("store", EP, False, "eu-west-1", "AKID", SECRET, "TOKEN")
    assert (p.local_name, p.endpoint, p.public, p.region, p.access_key, p.secret_key, p.session_token) == (
        "store", EP, False, "eu-west-1", "AKID", SECRET, "TOKEN"
    )
    assert p.has_credentials and p.addressing_style == "path" and p.request_checksum == "when_supported"
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.endpoint = "http://elsewhere"  # type: ignore[misc]
    assert hash(p) == hash(Profile("store", EP, False, "eu-west-1", "AKID", SECRET, "TOKEN"))


def test_repr_never_shows_secrets() -> None:
    p = Profile("store", EP, access_key="AKIDVISIBLE", secret_key=SECRET, session_token=SECRET + "tok")
    for text in (repr(p), str(p), f"{p}", repr([p]), repr({"p": p})):
        assert SECRET not in text
        assert "store" in text and EP in text
    assert "own credentials" in repr(p)
    assert "public" in repr(Profile("pub", EP, public=True))
    assert "default chain" in repr(Profile("ep", EP))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"local_name": "_"}, "reserved"),
        ({"local_name": ""}, "local_name"),
        ({"local_name": "a/b"}, "local_name"),
        ({"local_name": "a b"}, "local_name"),
        ({"local_name": "..", }, "local_name"),
        ({"endpoint": "ftp://x"}, "http"),
        ({"endpoint": "127.0.0.1:9000"}, "http"),
        ({"endpoint": "http://"}, "host"),
        ({"endpoint": "http://h:notaport"}, "valid URL"),
        ({"endpoint": "http://h/?q=1"}, "query"),
        ({"access_key": "A"}, "together"),
        ({"secret_key": SECRET}, "together"),
        ({"session_token": SECRET}, "needs access_key"),
        ({"public": True, "access_key": "A", "secret_key": SECRET}, "public profile takes no credentials"),
        ({"access_key": "", "secret_key": SECRET}, "non-empty"),
        ({"addressing_style": "sideways"}, "addressing_style"),
        ({"request_checksum": "never"}, "request_checksum"),
        ({"region": "us east"}, "region"),
        ({"public": "yes"}, "public"),
    ],
)
def test_profile_validation(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"local_name": "p", "endpoint": EP, **kwargs}
    with pytest.raises(pos3.ProfileError, match=message) as info:
        Profile(**args)  # type: ignore[arg-type]
    assert isinstance(info.value, ValueError)
    assert SECRET not in str(info.value)


def test_endpoint_with_userinfo_is_refused_without_echoing_it() -> None:
    with pytest.raises(pos3.ProfileError, match="must not contain credentials") as info:
        Profile("p", f"https://user:{SECRET}@storage.example.com")
    assert SECRET not in str(info.value)


@pytest.mark.parametrize("style", ["path", "virtual", "auto"])
def test_addressing_styles(style: str) -> None:
    assert Profile("p", "https://s3.example.com/base", addressing_style=style).addressing_style == style


# ---------------------------------------------------------------------------------------- registration


def test_register_and_resolve() -> None:
    register_profile("store", EP, region="eu-west-1")
    p = resolve_profile("store")
    assert p == Profile("store", EP, region="eu-west-1")
    register_profile("cache-named", EP, local_name="elsewhere")
    assert resolve_profile("cache-named") == Profile("elsewhere", EP)


def test_reregistering_the_same_configuration_is_a_no_op() -> None:
    register_profile("store", EP, access_key="A", secret_key=SECRET)
    register_profile("store", EP, access_key="A", secret_key=SECRET)
    assert resolve_profile("store") == Profile("store", EP, access_key="A", secret_key=SECRET)


@pytest.mark.parametrize(
    "change",
    [{"endpoint": "http://127.0.0.1:9001"}, {"public": True}, {"region": "eu-west-1"}, {"local_name": "x"},
     {"secret_key": SECRET + "2"}, {"request_checksum": "when_required"}],
)
def test_reregistering_a_different_configuration_raises(change: dict[str, object]) -> None:
    base: dict[str, object] = {"endpoint": EP, "access_key": "A", "secret_key": SECRET}
    if change.get("public"):
        base = {"endpoint": EP}
    register_profile("store", **base)  # type: ignore[arg-type]
    with pytest.raises(pos3.ProfileError, match="already registered") as info:
        register_profile("store", **{**base, **change})  # type: ignore[arg-type]
    assert SECRET not in str(info.value)
    assert resolve_profile("store") == Profile("store", **base)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["", "a@b", "a/b", "a b", "_", "é"])
def test_invalid_or_reserved_names(name: str) -> None:
    with pytest.raises(pos3.ProfileError):
        register_profile(name, EP)


def test_resolve_none_profile_and_default_chain_name() -> None:
    p = Profile("inline", EP)
    assert resolve_profile(p) is p
    assert resolve_profile(None) is None
    assert resolve_profile("_") is None


@pytest.mark.parametrize("bad", ["", "nope"])
def test_unknown_or_empty_names_raise(bad: str) -> None:
    with pytest.raises(pos3.ProfileError, match=repr(bad)):
        resolve_profile(bad)


def test_unknown_name_message_names_the_registry_file(tmp_path: Path) -> None:
    with pytest.raises(pos3.ProfileError) as info:
        resolve_profile("nope")
    assert "register_profile" in str(info.value) and str(tmp_path / "absent.toml") in str(info.value)


# ---------------------------------------------------------------------------------------- file location


def test_registry_file_location(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("POS3_PROFILES_FILE", str(tmp_path / "explicit.toml"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert profiles_file() == tmp_path / "explicit.toml"
    monkeypatch.delenv("POS3_PROFILES_FILE")
    assert profiles_file() == tmp_path / "xdg" / "pos3" / "profiles.toml"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    assert profiles_file() == tmp_path / "home" / ".config" / "pos3" / "profiles.toml"


# ---------------------------------------------------------------------------------------- file contents


def _registry(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, text: str, **files: str) -> Path:
    folder = tmp_path / "conf"
    folder.mkdir(exist_ok=True)
    path = folder / "profiles.toml"
    path.write_text(text, encoding="utf-8")
    for name, body in files.items():
        (folder / name.replace("_", ".")).write_text(body, encoding="utf-8")
    monkeypatch.setenv("POS3_PROFILES_FILE", str(path))
    return path


def test_file_profiles_with_every_field(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _registry(
        monkeypatch, tmp_path,
        "[profiles.store]\n"
        f'endpoint = "{EP}"\nregion = "eu-west-1"\nlocal_name = "store-cache"\n'
        'credentials_file = "store.ini"\naddressing_style = "virtual"\nrequest_checksum = "when_required"\n'
        "\n[profiles.open]\n"
        'endpoint = "https://open.example.com"\npublic = true\n',
        store_ini=f"[store]\naws_access_key_id = AKID\naws_secret_access_key = {SECRET}\naws_session_token = TOK\n",
    )
    assert resolve_profile("store") == Profile(
        "store-cache", EP, region="eu-west-1", access_key="AKID", secret_key=SECRET, session_token="TOK",
        addressing_style="virtual", request_checksum="when_required",
    )
    assert resolve_profile("open") == Profile("open", "https://open.example.com", public=True)


def test_credentials_default_section_and_absolute_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    creds = tmp_path / "elsewhere" / "credentials"
    creds.parent.mkdir()
    creds.write_text(f"[someone-else]\naws_access_key_id = NO\naws_secret_access_key = NO\n"
                     f"[default]\naws_access_key_id = AKID\naws_secret_access_key = {SECRET}\n", encoding="utf-8")
    _registry(monkeypatch, tmp_path, f'[profiles.store]\nendpoint = "{EP}"\ncredentials_file = "{creds}"\n')
    assert resolve_profile("store") == Profile("store", EP, access_key="AKID", secret_key=SECRET)


def test_relative_credentials_path_is_relative_to_the_registry_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _registry(monkeypatch, tmp_path, f'[profiles.store]\nendpoint = "{EP}"\ncredentials_file = "sub/creds"\n')
    (tmp_path / "conf" / "sub").mkdir()
    (tmp_path / "conf" / "sub" / "creds").write_text(
        f"[store]\naws_access_key_id = AKID\naws_secret_access_key = {SECRET}\n", encoding="utf-8"
    )
    monkeypatch.chdir(tmp_path)
    assert resolve_profile("store") == Profile("store", EP, access_key="AKID", secret_key=SECRET)


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("[profiles.x\n", ["malformed TOML"]),
        ("[other]\na = 1\n", ["unknown top-level key 'other'"]),
        ("profiles = 3\n", ["'profiles' must be a table"]),
        ("[profiles.x]\n", ["[profiles.x] endpoint", "missing"]),
        (f'[profiles.x]\nendpoint = "{EP}"\nregion = 3\n', ["[profiles.x] region", "string"]),
        (f'[profiles.x]\nendpoint = "{EP}"\npublic = "yes"\n', ["[profiles.x] public", "boolean"]),
        (f'[profiles.x]\nendpoint = "{EP}"\nsecret_key = "s"\n', ["[profiles.x] secret_key", "unknown field"]),
        ('[profiles.x]\nendpoint = "ftp://nope"\n', ["[profiles.x]", "endpoint"]),
        (f'[profiles.x]\nendpoint = "{EP}"\nlocal_name = "a/b"\n', ["[profiles.x]", "local_name"]),
        (f'[profiles._]\nendpoint = "{EP}"\n', ["[profiles._]", "reserved"]),
        (f'[profiles.x]\nendpoint = "{EP}"\ncredentials_file = "missing.ini"\n',
         ["[profiles.x] credentials_file", "missing.ini"]),
        (f'[profiles.x]\nendpoint = "{EP}"\ncredentials_file = ""\n', ["[profiles.x] credentials_file", "empty"]),
    ],
)
def test_malformed_registry_names_the_file_and_the_field(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, text: str, fragments: list[str]
) -> None:
    path = _registry(monkeypatch, tmp_path, text)
    with pytest.raises(pos3.ProfileError) as info:
        resolve_profile("x")
    message = str(info.value)
    assert message.startswith(str(path)), message
    assert all(f in message for f in fragments), message


@pytest.mark.parametrize(
    ("creds", "fragments"),
    [
        (f"aws_secret_access_key = {SECRET}\n", ["malformed INI", "MissingSectionHeaderError"]),
        (f"[x]\naws_secret_access_key = {SECRET}\n[x]\n", ["malformed INI"]),
        (f"[x]\n  {SECRET}\n", ["malformed INI"]),
        (f"[other]\naws_access_key_id = A\naws_secret_access_key = {SECRET}\n", ["no [x] or [default] section"]),
        (f"[x]\naws_secret_access_key = {SECRET}\n", ["needs both aws_access_key_id and aws_secret_access_key"]),
        (f"[DEFAULT]\naws_access_key_id = A\naws_secret_access_key = {SECRET}\n[x]\n", ["needs both"]),
    ],
)
def test_bad_credentials_file_never_echoes_a_secret(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, creds: str, fragments: list[str]
) -> None:
    path = _registry(monkeypatch, tmp_path, f'[profiles.x]\nendpoint = "{EP}"\ncredentials_file = "c.ini"\n',
                     c_ini=creds)
    with pytest.raises(pos3.ProfileError) as info:
        resolve_profile("x")
    message = str(info.value)
    assert SECRET not in "".join(traceback.format_exception(info.value))  # not in a chained cause either
    assert message.startswith(f"{path}: [profiles.x] credentials_file"), message
    assert all(f in message for f in fragments), message


def test_public_profile_with_credentials_in_the_file_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _registry(monkeypatch, tmp_path,
              f'[profiles.x]\nendpoint = "{EP}"\npublic = true\ncredentials_file = "c.ini"\n',
              c_ini=f"[x]\naws_access_key_id = A\naws_secret_access_key = {SECRET}\n")
    with pytest.raises(pos3.ProfileError, match="public profile takes no credentials") as info:
        resolve_profile("x")
    assert SECRET not in str(info.value)


def test_file_is_read_lazily_and_code_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = _registry(monkeypatch, tmp_path, f'[profiles.x]\nendpoint = "{EP}"\n[profiles.y]\nendpoint = "{EP}"\n')
    register_profile("x", "https://code.example.com")
    path.write_text("this is not TOML [", encoding="utf-8")  # only read when code lacks a name
    assert resolve_profile("x") == Profile("x", "https://code.example.com")
    with pytest.raises(pos3.ProfileError, match="malformed TOML"):
        resolve_profile("y")
    path.write_text(f'[profiles.x]\nendpoint = "{EP}"\n[profiles.y]\nendpoint = "{EP}"\n', encoding="utf-8")
    assert resolve_profile("y") == Profile("y", EP)  # a failed load is retried
    assert resolve_profile("x") == Profile("x", "https://code.example.com")


def test_missing_registry_file_is_an_empty_registry() -> None:
    with pytest.raises(pos3.ProfileError, match="Unknown profile 'x'"):
        resolve_profile("x")


def test_a_changed_registry_file_or_location_is_read_again(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(pos3.ProfileError, match="Unknown profile 'x'"):
        resolve_profile("x")  # loads the (absent) file of the fixture
    path = _registry(monkeypatch, tmp_path, f'[profiles.x]\nendpoint = "{EP}"\n')
    assert resolve_profile("x") == Profile("x", EP)  # a new location, no reset needed
    path.write_text(f'[profiles.x]\nendpoint = "{EP}"\nregion = "eu-west-1"\n', encoding="utf-8")
    assert resolve_profile("x") == Profile("x", EP, region="eu-west-1")  # edited in place


def test_two_configurations_cannot_share_a_cache_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    register_profile("a", EP, local_name="shared")
    register_profile("alias", EP, local_name="shared")  # the same configuration: same data, allowed
    with pytest.raises(pos3.ProfileError, match="'shared' is already the cache folder of the registered profile"):
        register_profile("b", "http://127.0.0.1:9001", local_name="shared")
    path = _registry(monkeypatch, tmp_path, f'[profiles.x]\nendpoint = "{EP}"\n'
                                             '[profiles.y]\nendpoint = "https://other.example.com"\nlocal_name = "x"\n')
    with pytest.raises(pos3.ProfileError) as info:
        resolve_profile("y")
    assert str(info.value).startswith(f"{path}: [profiles.y]") and "'x'" in str(info.value)


# ------------------------------------------------------------------------------------------- TLS


def test_tls_settings_default_to_checking_with_the_usual_cas() -> None:
    p = Profile("store", "https://s3.example.com")
    assert (p.ca_bundle, p.verify) == (None, True)
    assert _profiles.tls_verify(p, {}) == (None, "the default AWS configuration")
    assert _profiles.tls_verify(None, {"AWS_CA_BUNDLE": "/ca.pem"})[0] is None  # botocore reads it itself


def test_ca_bundle_and_verify_are_validated_and_shown(tmp_path: Path) -> None:
    p = Profile("store", "https://s3.example.com", ca_bundle=tmp_path / "ca.pem")  # a PathLike is kept as str
    assert p.ca_bundle == str(tmp_path / "ca.pem") and "ca_bundle=" in repr(p)
    assert "verify=False" in repr(Profile("store", "https://s3.example.com", verify=False))
    with pytest.raises(pos3.ProfileError, match="ca_bundle has no effect with verify=False"):
        Profile("store", "https://s3.example.com", ca_bundle="/ca.pem", verify=False)
    with pytest.raises(pos3.ProfileError, match="verify must be True or False"):
        Profile("store", "https://s3.example.com", verify="no")  # type: ignore[arg-type]
    with pytest.raises(pos3.ProfileError, match="ca_bundle must be the path"):
        Profile("store", "https://s3.example.com", ca_bundle="")


@pytest.mark.parametrize(("kwargs", "environ", "expected"), [
    ({"access_key": "AK", "secret_key": SECRET}, {"AWS_CA_BUNDLE": "/env.pem"}, "/env.pem"),
    ({"public": True}, {"AWS_CA_BUNDLE": "/env.pem"}, "/env.pem"),
    ({}, {"AWS_CA_BUNDLE": "/env.pem"}, None),  # default chain of its own endpoint: botocore reads the variable
    ({"access_key": "AK", "secret_key": SECRET, "ca_bundle": "/own.pem"}, {"AWS_CA_BUNDLE": "/env.pem"}, "/own.pem"),
    ({"access_key": "AK", "secret_key": SECRET, "verify": False}, {"AWS_CA_BUNDLE": "/env.pem"}, False),
    ({"access_key": "AK", "secret_key": SECRET}, {}, None),
])
def test_isolated_profiles_honour_aws_ca_bundle(kwargs: dict[str, object], environ: dict[str, str],
                                                expected: object) -> None:
    verify, source = _profiles.tls_verify(Profile("store", "https://s3.example.com", **kwargs), environ)  # type: ignore[arg-type]
    assert verify == expected and source


def test_register_profile_and_the_file_take_tls_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    register_profile("own", "https://a.example.com", ca_bundle=tmp_path / "ca.pem")
    register_profile("lab", "https://b.example.com", verify=False)
    assert resolve_profile("own").ca_bundle == str(tmp_path / "ca.pem")  # type: ignore[union-attr]
    assert resolve_profile("lab").verify is False  # type: ignore[union-attr]
    registry = tmp_path / "conf" / "profiles.toml"
    registry.parent.mkdir()
    registry.write_text('[profiles.rel]\nendpoint = "https://c.example.com"\nca_bundle = "certs/ca.pem"\n'
                        '[profiles.off]\nendpoint = "https://d.example.com"\nverify = false\n')
    monkeypatch.setenv("POS3_PROFILES_FILE", str(registry))
    assert resolve_profile("rel").ca_bundle == str(registry.parent / "certs" / "ca.pem")  # type: ignore[union-attr]
    assert resolve_profile("off").verify is False  # type: ignore[union-attr]
    registry.write_text('[profiles.bad]\nendpoint = "https://c.example.com"\nverify = "no"\n')
    with pytest.raises(pos3.ProfileError, match=r"\[profiles.bad\] verify: must be a boolean"):
        resolve_profile("bad")
