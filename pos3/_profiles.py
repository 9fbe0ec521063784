"""Profiles: which endpoint and credentials a URL is read with, and where it lands in the cache.

Profiles come from code (`register_profile`, or a `Profile` passed inline) and from a registry
file, read lazily on the first lookup of a name that code did not register (and read again
when the file or ``$POS3_PROFILES_FILE`` changed):
``$POS3_PROFILES_FILE``, else ``$XDG_CONFIG_HOME/pos3/profiles.toml``, else
``~/.config/pos3/profiles.toml``. Profiles registered in code win over the file.

The name ``_`` is reserved: it is the local folder of the default credential chain, and
``profile="_"`` (or ``s3://_@bucket/key``) selects that chain explicitly, even inside a mirror
whose ``default_profile`` is another profile.

Nothing here does network I/O; the registry and credentials files are read on first use.
Secrets (secret key, session token) never appear in a ``repr``, a log line or an error message.
"""

from __future__ import annotations

import configparser
import os
import re
import threading
import tomllib
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._errors import ProfileError

__all__ = [
    "DEFAULT_LOCAL_NAME",
    "Profile",
    "profiles_file",
    "register_profile",
    "reset_registry",
    "resolve_profile",
    "tls_verify",
]

DEFAULT_LOCAL_NAME = "_"
_NAME = re.compile(r"^[A-Za-z0-9_\-]+$")
_ADDRESSING = ("path", "virtual", "auto")
_CHECKSUMS = ("when_supported", "when_required")


def _endpoint_problem(endpoint: object) -> str | None:
    """Why ``endpoint`` is not a usable endpoint URL, or ``None``. Never echoes userinfo."""
    if not isinstance(endpoint, str):
        return f"must be a string, not {type(endpoint).__name__}"
    try:
        parts = urllib.parse.urlsplit(endpoint)
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError:
        return "is not a valid URL"
    if "@" in parts.netloc:
        return "must not contain credentials (user:password@); use access_key and secret_key"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{endpoint!r} must be an http:// or https:// URL with a host"
    if parts.query or parts.fragment:
        return f"{endpoint!r} must not have a query or a fragment"
    return None


@dataclass(frozen=True)
class Profile:
    """An S3-compatible endpoint with its own credentials and its own folder in the cache.

    Frozen and validated at construction. Secrets never appear in ``repr()``, logs or error
    messages (``repr`` shows only whether credentials are set).

    Attributes:
        local_name: Folder name in the cache (``<cache_root>/<local_name>/bucket/key``); letters,
            digits, ``-`` and ``_``; ``_`` is reserved for the default credential chain.
        endpoint: Endpoint URL, e.g. ``https://storage.example.com`` or ``http://127.0.0.1:9000``.
        public: Make unsigned (anonymous) requests; no credentials are read from anywhere.
        region: Region name; ``us-east-1`` when unset.
        access_key: Access key id; must come with ``secret_key``. When set, the profile uses
            only these credentials and never reads the ambient AWS configuration
            (environment, ``~/.aws``, SSO, instance roles).
        secret_key: Secret access key.
        session_token: Optional session token for temporary credentials.
        addressing_style: ``"path"`` (the default: ``endpoint/bucket/key``, what MinIO, Ceph
            and most S3-compatible servers need), ``"virtual"`` (``bucket.endpoint/key``) or
            ``"auto"`` (botocore decides).
        request_checksum: ``"when_supported"`` (botocore's default: CRC checksums on every
            upload, validated on download) or ``"when_required"`` for servers that reject the
            newer checksum headers (only operations that require a checksum send one).
        ca_bundle: A PEM file with the certificate(s) to trust for this HTTPS endpoint, e.g. the
            private CA of an on-premises server. Unset: ``$AWS_CA_BUNDLE`` when set, else the
            usual public CAs. Not read until the first request.
        verify: Check the endpoint's TLS certificate (the default). ``False`` turns the check
            off, for a test server on a trusted network only; it cannot be combined with
            ``ca_bundle``.

    A profile without ``access_key`` and without ``public=True`` talks to its own endpoint
    with the credentials of botocore's default chain.
    """

    local_name: str
    endpoint: str
    public: bool = False
    region: str | None = None
    access_key: str | None = field(default=None, repr=False)
    secret_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)
    addressing_style: str = "path"
    request_checksum: str = "when_supported"
    ca_bundle: str | None = None
    verify: bool = True

    def __post_init__(self) -> None:
        name = self.local_name
        if name == DEFAULT_LOCAL_NAME:
            raise ProfileError("Profile local_name '_' is reserved for the default credential chain")
        if not isinstance(name, str) or not _NAME.match(name):
            raise ProfileError(f"Invalid profile local_name {name!r}: use only letters, digits, '-' and '_'")
        problem = _endpoint_problem(self.endpoint)
        if problem is not None:
            raise ProfileError(f"Profile {name!r}: endpoint {problem}")
        if not isinstance(self.public, bool):
            raise ProfileError(f"Profile {name!r}: public must be True or False")
        if self.region is not None and (not isinstance(self.region, str) or not _NAME.match(self.region)):
            raise ProfileError(f"Profile {name!r}: region must be a region name such as 'us-east-1'")
        for label in ("access_key", "secret_key", "session_token"):
            value = getattr(self, label)
            if value is not None and (not isinstance(value, str) or not value):
                raise ProfileError(f"Profile {name!r}: {label} must be a non-empty string")
        if (self.access_key is None) != (self.secret_key is None):
            raise ProfileError(f"Profile {name!r}: access_key and secret_key must be given together")
        if self.session_token is not None and self.access_key is None:
            raise ProfileError(f"Profile {name!r}: session_token needs access_key and secret_key")
        if self.public and self.access_key is not None:
            raise ProfileError(f"Profile {name!r}: a public profile takes no credentials")
        if self.addressing_style not in _ADDRESSING:
            raise ProfileError(f"Profile {name!r}: addressing_style must be one of {', '.join(_ADDRESSING)}")
        if self.request_checksum not in _CHECKSUMS:
            raise ProfileError(f"Profile {name!r}: request_checksum must be one of {', '.join(_CHECKSUMS)}")
        if isinstance(self.ca_bundle, os.PathLike):
            object.__setattr__(self, "ca_bundle", os.fspath(self.ca_bundle))
        if self.ca_bundle is not None and (not isinstance(self.ca_bundle, str) or not self.ca_bundle):
            raise ProfileError(f"Profile {name!r}: ca_bundle must be the path of a PEM file")
        if not isinstance(self.verify, bool):
            raise ProfileError(f"Profile {name!r}: verify must be True or False")
        if not self.verify and self.ca_bundle is not None:
            raise ProfileError(f"Profile {name!r}: ca_bundle has no effect with verify=False; set one of them")

    def __repr__(self) -> str:
        creds = "public" if self.public else "own credentials" if self.has_credentials else "default chain"
        extra = "" if self.region is None else f", region={self.region!r}"
        if self.ca_bundle is not None:
            extra += f", ca_bundle={self.ca_bundle!r}"
        if not self.verify:
            extra += ", verify=False"
        return f"Profile({self.local_name!r}, {self.endpoint!r}, {creds}{extra})"

    @property
    def has_credentials(self) -> bool:
        """Whether the profile carries its own credentials."""
        return self.access_key is not None

    @property
    def isolated(self) -> bool:
        """Whether the profile reads nothing of the ambient AWS configuration (own keys, or public)."""
        return self.has_credentials or self.public


def tls_verify(profile: Profile | None, environ: Mapping[str, str]) -> tuple[bool | str | None, str]:
    """How a client for ``profile`` checks TLS certificates, and where that setting comes from.

    Returns ``(verify, source)``: ``verify`` is botocore's ``verify`` argument (``None``: leave it
    to botocore's own configuration, which reads ``$AWS_CA_BUNDLE`` and ``~/.aws/config``;
    ``False``: no check; a path: trust that CA bundle) and ``source`` names the setting, for
    error messages. An isolated profile reads no AWS configuration, but ``$AWS_CA_BUNDLE`` names
    no secret, so it applies to every profile that sets no ``ca_bundle`` of its own.
    """
    if profile is not None:
        if not profile.verify:
            return False, f"Profile {profile.local_name!r}: verify=False"
        if profile.ca_bundle is not None:
            return profile.ca_bundle, f"Profile {profile.local_name!r}: ca_bundle"
        if profile.isolated and environ.get("AWS_CA_BUNDLE"):
            return environ["AWS_CA_BUNDLE"], "AWS_CA_BUNDLE"
    return None, "the default AWS configuration"


_lock = threading.RLock()
_registered: dict[str, Profile] = {}
_from_file: dict[str, Profile] | None = None
_file_signature: tuple[str, int, int] | None = None


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not name or not _NAME.match(name):
        raise ProfileError(f"Invalid profile name {name!r}: use only letters, digits, '-' and '_'")
    if name == DEFAULT_LOCAL_NAME:
        raise ProfileError("Profile name '_' is reserved for the default credential chain")
    return name


def register_profile(
    name: str,
    endpoint: str,
    public: bool = False,
    region: str | None = None,
    local_name: str | None = None,
    *,
    access_key: str | None = None,
    secret_key: str | None = None,
    session_token: str | None = None,
    addressing_style: str = "path",
    request_checksum: str = "when_supported",
    ca_bundle: str | os.PathLike[str] | None = None,
    verify: bool = True,
) -> None:
    """Register a named profile for this process.

    Registering the same name again with the same configuration does nothing; with a
    different one it raises. A name registered here wins over the same name in the registry
    file.

    Args:
        name: The name used in ``profile=`` and in ``s3://name@bucket/key`` URLs.
        endpoint: Endpoint URL of the S3-compatible server.
        public: Make anonymous, unsigned requests.
        region: Region name.
        local_name: Folder name in the cache; defaults to ``name``.
        access_key: Access key id (with ``secret_key``); see `Profile`.
        secret_key: Secret access key.
        session_token: Session token for temporary credentials.
        addressing_style: ``"path"``, ``"virtual"`` or ``"auto"``; see `Profile`.
        request_checksum: ``"when_supported"`` or ``"when_required"``; see `Profile`.
        ca_bundle: PEM file of the CA(s) to trust for an HTTPS endpoint; see `Profile`.
        verify: ``False`` turns TLS certificate checks off; see `Profile`.

    Raises:
        ProfileError: The name or a field is invalid, or the name is already registered with
            a different configuration.
    """
    _check_name(name)
    profile = Profile(
        local_name=local_name if local_name is not None else name,
        endpoint=endpoint,
        public=public,
        region=region,
        access_key=access_key,
        secret_key=secret_key,
        session_token=session_token,
        addressing_style=addressing_style,
        request_checksum=request_checksum,
        ca_bundle=os.fspath(ca_bundle) if ca_bundle is not None else None,
        verify=verify,
    )
    with _lock:
        existing = _registered.get(name)
        if existing is not None and existing != profile:
            raise ProfileError(
                f"Profile {name!r} is already registered with a different configuration "
                f"({existing!r}); profiles cannot be changed once registered"
            )
        _check_folder(name, profile, _registered, "registered")
        _registered[name] = profile


def _check_folder(name: str, profile: Profile, others: dict[str, Profile], where: str) -> None:
    """Two different configurations must not share a cache folder (they would overwrite each other)."""
    for other_name, other in others.items():
        if other_name != name and other.local_name == profile.local_name and other != profile:
            raise ProfileError(
                f"Profile {name!r}: local_name {profile.local_name!r} is already the cache folder of the "
                f"{where} profile {other_name!r}, which has a different configuration; choose another local_name"
            )


def profiles_file() -> Path:
    """Where the profile registry file is looked for.

    ``$POS3_PROFILES_FILE``, else ``$XDG_CONFIG_HOME/pos3/profiles.toml``, else
    ``~/.config/pos3/profiles.toml``.
    """
    explicit = os.environ.get("POS3_PROFILES_FILE")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CONFIG_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".config"
    return base / "pos3" / "profiles.toml"


def _bad(path: Path, name: str, field_name: str, why: str) -> ProfileError:
    return ProfileError(f"{path}: [profiles.{name}] {field_name}: {why}")


def _credentials(path: Path, name: str, creds_path: Path) -> dict[str, str]:
    """Keys from an AWS-style credentials file: section ``[name]``, else ``[default]``."""
    parser = configparser.ConfigParser(interpolation=None, default_section="\x00no-default-section")
    try:
        with creds_path.open(encoding="utf-8") as fh:
            parser.read_file(fh)
    except OSError as exc:
        raise _bad(path, name, "credentials_file", f"cannot read {creds_path} ({exc.strerror})") from None
    except (configparser.Error, UnicodeDecodeError) as exc:
        # The parser's own message quotes the offending line, which may hold a secret.
        lineno = getattr(exc, "lineno", None)
        where = f" near line {lineno}" if lineno else ""
        raise _bad(path, name, "credentials_file", f"{creds_path}: malformed INI{where} ({type(exc).__name__})"
                   ) from None
    section = name if parser.has_section(name) else "default" if parser.has_section("default") else None
    if section is None:
        raise _bad(path, name, "credentials_file", f"{creds_path} has no [{name}] or [default] section")
    sec = parser[section]
    access, secret = sec.get("aws_access_key_id", "").strip(), sec.get("aws_secret_access_key", "").strip()
    if not access or not secret:
        raise _bad(path, name, "credentials_file",
                   f"{creds_path}: [{section}] needs both aws_access_key_id and aws_secret_access_key")
    out = {"access_key": access, "secret_key": secret}
    token = sec.get("aws_session_token", "").strip()
    if token:
        out["session_token"] = token
    return out


_FILE_FIELDS: dict[str, type] = {
    "endpoint": str,
    "region": str,
    "local_name": str,
    "public": bool,
    "credentials_file": str,
    "addressing_style": str,
    "request_checksum": str,
    "ca_bundle": str,
    "verify": bool,
}


def _load_file(path: Path) -> dict[str, Profile]:
    """Parse the registry file; a missing file is an empty registry."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ProfileError(f"{path}: cannot read the profile registry ({exc.strerror})") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ProfileError(f"{path}: malformed TOML ({exc})") from None
    unknown = set(data) - {"profiles"}
    if unknown:
        raise ProfileError(f"{path}: unknown top-level key {sorted(unknown)[0]!r}; expected [profiles.NAME] tables")
    tables = data.get("profiles", {})
    if not isinstance(tables, dict):
        raise ProfileError(f"{path}: 'profiles' must be a table of [profiles.NAME] tables")
    out: dict[str, Profile] = {}
    for name, table in tables.items():
        if not _NAME.match(name) or name == DEFAULT_LOCAL_NAME:
            raise ProfileError(
                f"{path}: [profiles.{name}]: invalid profile name; use letters, digits, '-' and '_' ('_' is reserved)"
            )
        if not isinstance(table, dict):
            raise ProfileError(f"{path}: [profiles.{name}] must be a table")
        for key, value in table.items():
            expected = _FILE_FIELDS.get(key)
            if expected is None:
                raise _bad(path, name, key, f"unknown field (known: {', '.join(sorted(_FILE_FIELDS))})")
            if not isinstance(value, expected):
                raise _bad(path, name, key, f"must be a {'boolean' if expected is bool else 'string'}")
        if "endpoint" not in table:
            raise _bad(path, name, "endpoint", "missing (every profile needs an endpoint URL)")
        kwargs: dict[str, Any] = {
            k: table[k]
            for k in ("endpoint", "region", "public", "addressing_style", "request_checksum", "verify") if k in table
        }
        kwargs["local_name"] = table.get("local_name", name)
        creds = table.get("credentials_file")
        if creds is not None:
            if not creds:
                raise _bad(path, name, "credentials_file", "is empty")
            creds_path = Path(creds).expanduser()
            if not creds_path.is_absolute():
                creds_path = path.parent / creds_path
            kwargs.update(_credentials(path, name, creds_path))
        bundle = table.get("ca_bundle")
        if bundle is not None:
            if not bundle:
                raise _bad(path, name, "ca_bundle", "is empty")
            bundle_path = Path(bundle).expanduser()
            kwargs["ca_bundle"] = str(bundle_path if bundle_path.is_absolute() else path.parent / bundle_path)
        try:
            profile = Profile(**kwargs)
            _check_folder(name, profile, out, "file's")
        except ProfileError as exc:
            raise ProfileError(f"{path}: [profiles.{name}] {exc}") from None
        out[name] = profile
    return out


def _signature(path: Path) -> tuple[str, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (str(path), st.st_mtime_ns, st.st_size)


def _file_profiles() -> dict[str, Profile]:
    """The registry file's profiles; re-read when the file, or where it is looked for, changed."""
    global _from_file, _file_signature
    path = profiles_file()
    signature = _signature(path) or (str(path), -1, -1)
    with _lock:
        if _from_file is None or _file_signature != signature:
            _from_file = _load_file(path)
            _file_signature = signature
        return _from_file


def reset_registry() -> None:
    """Forget registered profiles and the loaded registry file (tests use this)."""
    global _from_file, _file_signature
    with _lock:
        _registered.clear()
        _from_file = None
        _file_signature = None


def resolve_profile(profile: str | Profile | None) -> Profile | None:
    """The `Profile` for a name or a `Profile`; ``None`` means the default credential chain.

    ``None`` and the reserved name ``"_"`` both give ``None``. Names registered in code win
    over the registry file, which is read on the first lookup of a name code did not register.

    Raises:
        ProfileError: The name is empty, or unknown in code and in the registry file, or the
            registry file is malformed.
    """
    if profile is None or isinstance(profile, Profile):
        return profile
    if not isinstance(profile, str) or not profile:
        raise ProfileError(f"Invalid profile {profile!r}: give a registered name or a pos3.Profile")
    if profile == DEFAULT_LOCAL_NAME:
        return None
    with _lock:
        found = _registered.get(profile)
    if found is not None:
        return found
    found = _file_profiles().get(profile)
    if found is None:
        raise ProfileError(
            f"Unknown profile {profile!r}: register it with pos3.register_profile() "
            f"or add [profiles.{profile}] to {profiles_file()}"
        )
    return found
