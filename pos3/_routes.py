"""Routes remembered between runs, so that a run whose requests can all go direct needs no botocore.

Importing aiobotocore and botocore and building a client costs about 0.4 s of CPU per process
(`docs/performance.md`), more than a whole no-op re-sync of thousands of files once the listing
goes direct (`pos3._direct`). What a direct request takes from botocore is little: the bucket's
URL and signing region (its route), the checksum settings, the TLS setting and the credentials.
After a run has learned them from botocore, they are kept in ``<cache root>/.pos3/routes.json``,
under a fingerprint of everything botocore resolved them from:

- the pos3 version and the profile (endpoint, region, addressing style, checksums, TLS);
- for a client that reads the AWS configuration (the default chain, or a profile without keys
  of its own): every ``AWS_*`` environment variable, by value, except the secret key and session
  token (whether they are set is part of it), and the bytes of the AWS config and credentials
  files.

The next run with the same fingerprint sends its requests direct from the start and makes a
botocore client only when a request needs one (a HEAD, a multipart upload, a delete...). An
answer that says a remembered route is wrong sends that request through botocore, as for a route
learned in the same run (`pos3._s3.S3`). Credentials are taken without botocore only where
botocore would take them from the same place, to the same values: the profile's own keys, none
for a public profile, or the ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` environment
variables when botocore found its credentials there last time under the same fingerprint (its
first provider; ``AWS_CREDENTIAL_EXPIRATION`` makes them refreshable: botocore then). Anything
else (SSO, roles, instance metadata) keeps the botocore client from the start.

The file holds no secret. It is a cache: unreadable or stale, it is ignored and written anew.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from ._profiles import Profile
from ._version import __version__

__all__ = ["Frozen", "Preset", "RouteMemo", "StaticCredentials", "env_credentials", "fingerprint"]

_SECRETS = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")
_KEEP = 64  # fingerprints kept in the file, the most recent ones


class Frozen(NamedTuple):
    """Credentials as botocore's ``ReadOnlyCredentials`` (what `pos3._direct` signs with)."""

    access_key: str
    secret_key: str
    token: str | None


class StaticCredentials:
    """Credentials that do not change, with botocore's ``get_frozen_credentials()`` and ``method``."""

    def __init__(self, frozen: Frozen, method: str) -> None:
        self._frozen = frozen
        self.method = method

    def get_frozen_credentials(self) -> Frozen:
        return self._frozen


def env_credentials(environ: Mapping[str, str]) -> Frozen | None:
    """The credentials botocore's environment provider reads, or ``None`` when it reads none or
    would make them refreshable (``AWS_CREDENTIAL_EXPIRATION``)."""
    access, secret = environ.get("AWS_ACCESS_KEY_ID", ""), environ.get("AWS_SECRET_ACCESS_KEY", "")
    if not access or not secret or environ.get("AWS_CREDENTIAL_EXPIRATION"):
        return None
    token = next((environ[name] for name in ("AWS_SECURITY_TOKEN", "AWS_SESSION_TOKEN") if environ.get(name)), None)
    return Frozen(access, secret, token)


def _aws_files(environ: Mapping[str, str]) -> list[str]:
    home = os.path.expanduser("~")
    return [
        os.path.expanduser(environ.get("AWS_CONFIG_FILE") or os.path.join(home, ".aws", "config")),
        os.path.expanduser(environ.get("AWS_SHARED_CREDENTIALS_FILE") or os.path.join(home, ".aws", "credentials")),
    ]


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return b""


def _describe(profile: Profile | None) -> str:
    """Every field of ``profile``, secrets only as whether they are set."""
    if profile is None:
        return "default chain"
    fields = {f.name: getattr(profile, f.name) for f in dataclasses.fields(profile)}
    for name in ("secret_key", "session_token"):
        fields[name] = fields[name] is not None
    return repr(sorted(fields.items()))


def fingerprint(
    profile: Profile | None, verify: object, environ: Mapping[str, str], read: Callable[[str], bytes] = _read
) -> str:
    """What the route, settings and credentials of ``profile``'s client are resolved from, hashed.

    ``verify`` is the TLS setting given to the client (`pos3._profiles.tls_verify`, or the
    mirror's own). ``read`` reads a file's bytes (``b""`` when missing).
    """
    h = hashlib.sha256(f"{__version__}\0{_describe(profile)}\0{verify!r}".encode())
    if profile is None or not profile.isolated:
        for name in sorted(k for k in environ if k.startswith("AWS_")):
            value = "<set>" if name in _SECRETS else environ[name]
            h.update(f"\0{name}={value}".encode())
        for path in _aws_files(environ):
            h.update(f"\0{path}\0".encode())
            h.update(hashlib.sha256(read(path)).digest())
    return h.hexdigest()


@dataclass(frozen=True)
class Preset:
    """What one client resolved, as remembered: see the module docstring.

    Attributes:
        method: Where botocore found the credentials (its ``method``: ``"env"``, ``"explicit"``,
            ...), ``None`` when it found none (public).
        crc: PUTs carry a CRC32 checksum (else ``Content-MD5``).
        ask: GETs ask for the object's checksum.
        sign_payload: The client's ``s3.payload_signing_enabled``.
        verify: The TLS setting of direct requests: ``False``, or the CA file to trust.
        routes: ``{bucket: (url prefix, signing region or None)}``.
    """

    method: str | None
    crc: bool
    ask: bool
    sign_payload: bool | None
    verify: bool | str | None
    routes: Mapping[str, tuple[str, str | None]]

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "crc": self.crc,
            "ask": self.ask,
            "sign_payload": self.sign_payload,
            "verify": self.verify,
            "routes": {b: list(r) for b, r in self.routes.items()},
        }

    @classmethod
    def from_json(cls, data: Any) -> Preset | None:
        """A preset read back, or ``None`` when ``data`` is not one (a damaged or older file)."""
        try:
            routes = {str(b): (str(p), None if r is None else str(r)) for b, (p, r) in data["routes"].items()}
            method, sign, verify = data["method"], data["sign_payload"], data["verify"]
            if not (method is None or isinstance(method, str)) or sign not in (None, True, False):
                return None
            if not (verify is None or isinstance(verify, (bool, str))):
                return None
            return cls(method, bool(data["crc"]), bool(data["ask"]), sign, verify, routes)
        except (TypeError, KeyError, ValueError, AttributeError):
            return None


class RouteMemo:
    """The presets of one cache root (``routes.json``), read once and written when they changed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._loaded: dict[str, Any] | None = None
        self._changed: dict[str, Preset] = {}

    def _entries(self) -> dict[str, Any]:
        if self._loaded is None:
            try:
                data = json.loads(self.path.read_bytes())
                self._loaded = data if isinstance(data, dict) and data.get("version") == 1 else {}
            except (OSError, ValueError):
                self._loaded = {}
        entries = self._loaded.setdefault("entries", {})
        return entries if isinstance(entries, dict) else {}

    def get(self, key: str) -> Preset | None:
        return self._changed.get(key) or Preset.from_json(self._entries().get(key))

    def lookup(self, profile: Profile | None, verify: object, environ: Mapping[str, str]) -> tuple[str, Preset | None]:
        """The fingerprint of ``profile``'s client (see `fingerprint`) and the preset remembered
        for it, if it can be used: ``None`` when its CA file is gone."""
        key = fingerprint(profile, verify, environ)
        preset = self.get(key)
        if preset is not None and isinstance(preset.verify, str) and not os.path.isfile(preset.verify):
            preset = None
        return key, preset

    def put(self, key: str, preset: Preset) -> None:
        if self.get(key) != preset:
            self._changed[key] = preset

    def save(self) -> None:
        """Write the changed presets (merged into the file as it is now); errors are ignored."""
        if not self._changed or not self.path.parent.is_dir():
            return  # nothing new, or a cache root this mirror did not write to: nothing to remember
        self._loaded = None  # another process may have written since: merge into its version
        entries = self._entries()
        for key, preset in self._changed.items():
            entries.pop(key, None)
            entries[key] = preset.to_json()  # newest last
        kept = dict(list(entries.items())[-_KEEP:])
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            tmp.write_text(json.dumps({"version": 1, "entries": kept}))
            os.replace(tmp, self.path)
        except OSError:
            tmp.unlink(missing_ok=True)
        self._changed.clear()
