"""Parse and normalise ``s3://`` URLs; decide what is a URL and what is a local path. Pure."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ._errors import InvalidURLError

__all__ = ["S3URL", "bucket_listing", "is_url_like", "overlaps", "parse_s3_url"]

# Anything that starts like "scheme:/" is a URL attempt, never a local folder name.
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:/")
_BUCKET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,254}$")
_PROFILE = re.compile(r"^[A-Za-z0-9_\-]+$")


@dataclass(frozen=True, slots=True)
class S3URL:
    """A parsed ``s3://[profile@]bucket/key`` URL.

    Attributes:
        bucket: The bucket name.
        key: The key or prefix, without a leading slash; ``""`` for the whole bucket.
        profile: The profile named in the URL (``s3://name@bucket``), or ``None``.
        trailing_slash: Whether the URL ended with ``/`` (forces the directory meaning).
    """

    bucket: str
    key: str
    profile: str | None = None
    trailing_slash: bool = False

    @property
    def stem(self) -> str:
        """The key without trailing slashes: the name used for the local path and conflicts."""
        return self.key.rstrip("/")

    @property
    def dir_prefix(self) -> str:
        """The listing prefix of the directory meaning: ``"key/"``, or ``""`` for the bucket."""
        return f"{self.stem}/" if self.stem else ""

    def child(self, key: str) -> str:
        """The plain ``s3://bucket/key`` URL of a key in this bucket (no profile)."""
        return f"s3://{self.bucket}/{key}"

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def is_url_like(value: str) -> bool:
    """Whether ``value`` is meant as a URL (``scheme:/...``) rather than a local path.

    Leading white space does not hide a URL: ``" s3://b/k"`` is a mistyped URL, not a folder.
    """
    value = value.lstrip()
    return bool(_SCHEME.match(value)) or value.lower().startswith("s3:")


def parse_s3_url(url: str) -> S3URL:
    """Parse an ``s3://[profile@]bucket[/key]`` URL.

    Args:
        url: The URL.

    Returns:
        The parsed URL.

    Raises:
        InvalidURLError: The string is not a well-formed ``s3://`` URL.
    """
    shown = _redacted(url)
    if not url.startswith("s3://"):
        if url.lower().startswith("s3://"):
            raise InvalidURLError(f"{shown!r}: the scheme must be lowercase 's3://'")
        raise InvalidURLError(f"{shown!r}: not an S3 URL; expected s3://bucket/key")
    rest = url[len("s3://") :]
    authority, _, key = rest.partition("/")
    profile: str | None = None
    if "@" in authority:
        profile, _, authority = authority.rpartition("@")
        if not profile:
            raise InvalidURLError(f"{shown!r}: empty profile name before '@'")
        if ":" in profile:
            raise InvalidURLError(
                f"{shown!r}: credentials do not belong in a URL; register a profile and write s3://name@bucket/key"
            )
        if not _PROFILE.match(profile):
            raise InvalidURLError(f"{shown!r}: profile name {profile!r} may use only letters, digits, '-', '_'")
    if not authority:
        raise InvalidURLError(f"{shown!r}: missing bucket name; expected s3://bucket/key")
    if not _BUCKET.match(authority):
        what = repr(authority) if shown == url else "the part before the first '/'"
        raise InvalidURLError(f"{shown!r}: {what} is not a valid bucket name")
    if "\x00" in key:
        raise InvalidURLError(f"{shown!r}: the key contains a NUL character")
    if any(part in (".", "..") for part in key.split("/")):
        # The key names the local folder too (<cache>/<bucket>/<key>): '..' would leave it.
        raise InvalidURLError(f"{shown!r}: a '.' or '..' segment in the key; name the key without it")
    return S3URL(bucket=authority, key=key, profile=profile, trailing_slash=rest.endswith("/"))


def bucket_listing(url: str) -> tuple[bool, str | None]:
    """Whether ``url`` names the list of buckets (``s3://`` or ``s3://profile@``), and its profile.

    Pure. Returns ``(True, profile_or_None)`` for a bucket listing, ``(False, None)`` otherwise
    (any other string, valid or not, is left to `parse_s3_url`).
    """
    if not url.startswith("s3://"):
        return False, None
    rest = url[len("s3://") :].rstrip("/")
    if not rest:
        return True, None
    if rest.endswith("@") and "/" not in rest and _PROFILE.match(rest[:-1]):
        return True, rest[:-1]
    return False, None


def _redacted(url: str) -> str:
    """``url`` safe to show in an error: ``user:secret@`` after the scheme becomes ``***@``.

    Secrets may hold ``/`` and ``+``, so everything up to the last ``@`` goes when it holds a
    ``:``. Only messages about invalid URLs use this.
    """
    scheme, sep, rest = url.partition("://")
    before, at, after = rest.rpartition("@")
    if sep and at and ":" in before:
        return f"{scheme}://***@{after}"
    return url


def overlaps(left: str, right: str) -> bool:
    """Whether two key prefixes of one bucket overlap as folders (equal, parent or child).

    ``data`` overlaps ``data/x`` but not ``data_v2``. Empty segments do not count (``a//b``
    overlaps ``a/b``): both name the same local folder.
    """
    a = [p for p in left.split("/") if p]
    b = [p for p in right.split("/") if p]
    n = min(len(a), len(b))
    return a[:n] == b[:n]
