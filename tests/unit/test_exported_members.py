"""The public surface is deliberate: `pos3.__all__` is pinned, importable and documented."""

from __future__ import annotations

import inspect

import pos3

PUBLIC = [
    "AccessDeniedError",
    "AsyncMirror",
    "AsyncioRequiredError",
    "EndpointError",
    "Failure",
    "IntegrityError",
    "InvalidURLError",
    "LockTimeoutError",
    "NoMirrorError",
    "NotFoundError",
    "PlannedAction",
    "Pos3Error",
    "Profile",
    "ProfileError",
    "RegistrationError",
    "S3Error",
    "SyncMirror",
    "TransferError",
    "TransferPlan",
    "UnsafeKeyError",
    "__version__",
    "amirror",
    "download",
    "ls",
    "mirror",
    "plan_download",
    "plan_upload",
    "register_profile",
    "request_upload",
    "sync",
    "upload",
    "with_mirror",
]


def test_all_is_pinned_and_sorted() -> None:
    # Adding or removing a public name is an API change: update this list on purpose.
    assert pos3.__all__ == PUBLIC
    assert sorted(pos3.__all__) == pos3.__all__


def test_every_name_is_importable_and_documented() -> None:
    namespace: dict[str, object] = {}
    exec(f"from pos3 import {', '.join(PUBLIC)}", namespace)
    for name in PUBLIC:
        member = namespace[name]
        assert member is getattr(pos3, name)
        if name == "__version__":
            assert isinstance(member, str) and member
            continue
        doc = inspect.getdoc(member)
        assert doc and doc.strip(), f"pos3.{name} has no docstring"
        if inspect.isclass(member) and member.__doc__ is None:
            raise AssertionError(f"pos3.{name} inherits its docstring instead of having one")


def test_public_members_claim_the_pos3_package() -> None:
    for name in PUBLIC:
        member = getattr(pos3, name)
        module = getattr(member, "__module__", None)
        if module is not None and name != "__version__":
            assert module.startswith("pos3"), f"pos3.{name} comes from {module}"
