"""Profiles: which endpoint and credentials a URL is read with, and where it lands in the cache.

Profiles come from code (`register_profile`, or a `Profile` passed inline) and from a registry
file, loaded lazily on the first lookup of a name that code did not register:
``$POS3_PROFILES_FILE``, else ``$XDG_CONFIG_HOME/pos3/profiles.toml``, else
``~/.config/pos3/profiles.toml``. Profiles registered in code win over the file.
"""

from __future__ import annotations

import configparser
import os
import re
import threading
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._errors import ProfileError

__all__ = ["DEFAULT_LOCAL_NAME", "Profile", "profiles_file", "register_profile", "resolve_profile"]

DEFAULT_LOCAL_NAME = "_"
_NAME = re.compile(r"^[A-Za-z0-9_\-]+$")
_ADDRESSING = ("auto", "path", "virtual")
_CHECKSUMS = ("when_supported", "when_required")


@dataclass(frozen=True)
class Profile:
    """An S3-compatible endpoint with its own credentials and its own folder in the cache.

    Secrets never appear in ``repr()``, logs or error messages.

    Attributes:
        local_name: Folder name in the cache (``<cache_root>/<local_name>/bucket/key``); letters,
            digits, ``-`` and ``_``; ``_`` is reserved for the default credential chain.
        endpoint: Endpoint URL, e.g. ``https://storage.example.com`` or ``http://127.0.0.1:9000``.
        public: Make unsigned (anonymous) requests; no credentials are read.
        region: Region name; ``us-east-1`` when unset.
        access_key: Access key id; must come with ``secret_key``. When set, the profile uses
            only these credentials and never reads the ambient AWS configuration.
        secret_key: Secret access key.
        session_token: Optional session token for temporary credentials.
        addressing_style: ``"path"`` (default for custom endpoints: what MinIO, Ceph and most
            S3-compatible servers need), ``"virtual"`` or ``"auto"``.
        request_checksum: ``"when_supported"`` (botocore's default: CRC checksums on uploads) or
            ``"when_required"`` for servers that reject the newer checksum headers.
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

    def __post_init__(self) -> None:
        if self.local_name == DEFAULT_LOCAL_NAME:
            raise ProfileError("Profile local_name '_' is reserved for the default credential chain")
        if not self.local_name or not _NAME.match(self.local_name):
            raise ProfileError(
                f"Invalid profile local_name {self.local_name!r}: use only letters, digits, '-' and '_'"
            )
        if not isinstance(self.endpoint, str) or not re.match(r"^https?://[^/]+", self.endpoint):
            raise ProfileError(
                f"Profile {self.local_name!r}: endpoint {self.endpoint!r} must be an http(s):// URL"
            )
        if (self.access_key is None) != (self.secret_key is None):
            raise ProfileError(f"Profile {self.local_name!r}: access_key and secret_key must be given together")
        if self.session_token is not None and self.access_key is None:
            raise ProfileError(f"Profile {self.local_name!r}: session_token needs access_key and secret_key")
        if self.public and self.access_key is not None:
            raise ProfileError(f"Profile {self.local_name!r}: a public profile takes no credentials")
        if self.addressing_style not in _ADDRESSING:
            raise ProfileError(
                f"Profile {self.local_name!r}: addressing_style must be one of {', '.join(_ADDRESSING)}"
            )
        if self.request_checksum not in _CHECKSUMS:
            raise ProfileError(
                f"Profile {self.local_name!r}: request_checksum must be one of {', '.join(_CHECKSUMS)}"
            )

    @property
    def has_credentials(self) -> bool:
        """Whether the profile carries its own credentials."""
        return self.access_key is not None


_lock = threading.RLock()
_registered: dict[str, Profile] = {}
_from_file: dict[str, Profile] | None = None


def register_profile(
    name: str,
    endpoint: str,
    public: bool = False,
    region: str | None = None,
    local_name: str | None = None,
    **options: Any,
) -> None:
    """Register a named profile for this process.

    Args:
        name: The name used in ``profile=`` and in ``s3://name@bucket/key`` URLs.
        endpoint: Endpoint URL of the S3-compatible server.
        public: Make anonymous, unsigned requests.
        region: Region name.
        local_name: Folder name in the cache; defaults to ``name``.
        **options: Further `Profile` fields (``access_key``, ``secret_key``, ``session_token``,
            ``addressing_style``, ``request_checksum``).

    Raises:
        ProfileError: The name is invalid, or already registered with a different configuration.
    """
    if not name or not _NAME.match(name):
        raise ProfileError(f"Invalid profile name {name!r}: use only letters, digits, '-' and '_'")
    try:
        profile = Profile(local_name=local_name or name, endpoint=endpoint, public=public, region=region, **options)
    except TypeError as exc:
        raise ProfileError(f"Profile {name!r}: {exc}") from None
    with _lock:
        existing = _registered.get(name)
        if existing is not None and existing != profile:
            raise ProfileError(f"Profile {name!r} is already registered with a different configuration")
        _registered[name] = profile


def profiles_file() -> Path:
    """Where the profile registry file is looked for."""
    explicit = os.environ.get("POS3_PROFILES_FILE")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CONFIG_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".config"
    return base / "pos3" / "profiles.toml"


def _bad(path: Path, name: str, field_name: str, why: str) -> ProfileError:
    return ProfileError(f"{path}: [profiles.{name}] {field_name}: {why}")


def _credentials(path: Path, name: str, creds_path: Path) -> dict[str, str]:
    parser = configparser.ConfigParser(interpolation=None)
    try:
        with creds_path.open(encoding="utf-8") as fh:
            parser.read_file(fh)
    except OSError as exc:
        raise _bad(path, name, "credentials_file", f"cannot read {creds_path} ({exc.strerror})") from None
    except configparser.Error as exc:
        raise ProfileError(f"{creds_path}: malformed credentials file ({type(exc).__name__})") from None
    section = name if parser.has_section(name) else "default" if parser.has_section("default") else None
    if section is None:
        raise ProfileError(f"{creds_path}: no [{name}] or [default] section")
    sec = parser[section]
    access, secret = sec.get("aws_access_key_id"), sec.get("aws_secret_access_key")
    if not access or not secret:
        raise ProfileError(
            f"{creds_path}: [{section}] needs both aws_access_key_id and aws_secret_access_key"
        )
    out = {"access_key": access.strip(), "secret_key": secret.strip()}
    token = sec.get("aws_session_token")
    if token:
        out["session_token"] = token.strip()
    return out


_FILE_FIELDS = {
    "endpoint": str,
    "region": str,
    "local_name": str,
    "public": bool,
    "credentials_file": str,
    "addressing_style": str,
    "request_checksum": str,
}


def _load_file(path: Path) -> dict[str, Profile]:
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
        if not _NAME.match(name):
            raise ProfileError(f"{path}: profile name {name!r} may use only letters, digits, '-' and '_'")
        if not isinstance(table, dict):
            raise ProfileError(f"{path}: [profiles.{name}] must be a table")
        for key, value in table.items():
            expected = _FILE_FIELDS.get(key)
            if expected is None:
                raise _bad(path, name, key, f"unknown field (known: {', '.join(sorted(_FILE_FIELDS))})")
            if not isinstance(value, expected):
                raise _bad(path, name, key, f"must be a {expected.__name__}")
        if "endpoint" not in table:
            raise _bad(path, name, "endpoint", "missing (every profile needs an endpoint URL)")
        kwargs: dict[str, Any] = {
            k: table[k] for k in ("endpoint", "region", "public", "addressing_style", "request_checksum") if k in table
        }
        creds = table.get("credentials_file")
        if creds:
            creds_path = Path(creds).expanduser()
            if not creds_path.is_absolute():
                creds_path = path.parent / creds_path
            kwargs.update(_credentials(path, name, creds_path))
        try:
            out[name] = Profile(local_name=table.get("local_name") or name, **kwargs)
        except ProfileError as exc:
            raise ProfileError(f"{path}: [profiles.{name}] {exc}") from None
    return out


def _file_profiles() -> dict[str, Profile]:
    global _from_file
    with _lock:
        if _from_file is None:
            _from_file = _load_file(profiles_file())
        return _from_file


def reset_registry() -> None:
    """Forget registered profiles and the loaded registry file (tests use this)."""
    global _from_file
    with _lock:
        _registered.clear()
        _from_file = None


def resolve_profile(profile: str | Profile | None) -> Profile | None:
    """The `Profile` for a name, a `Profile`, or ``None`` (the default credential chain).

    Raises:
        ProfileError: The name is empty or unknown in code and in the registry file.
    """
    if profile is None or isinstance(profile, Profile):
        return profile
    if not isinstance(profile, str) or not profile:
        raise ProfileError(f"Invalid profile {profile!r}: give a registered name or a pos3.Profile")
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
