"""pos3: mirror S3 prefixes onto fast local disk and hand plain `pathlib.Path`s to any code.

```python
with pos3.mirror():
    data = pos3.download("s3://bucket/dataset")      # a local Path; only changed files fetched
    out = pos3.upload("s3://bucket/results", interval=60)
```
"""

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:
    from ._errors import (
        AccessDeniedError,
        AsyncioRequiredError,
        EndpointError,
        Failure,
        IntegrityError,
        InvalidURLError,
        LockTimeoutError,
        NoMirrorError,
        NotFoundError,
        Pos3Error,
        ProfileError,
        RegistrationError,
        S3Error,
        TransferError,
        UnsafeKeyError,
    )
    from ._facade import (
        SyncMirror,
        download,
        ls,
        mirror,
        plan_download,
        plan_upload,
        request_upload,
        sync,
        upload,
        with_mirror,
    )
    from ._mirror import AsyncMirror, amirror
    from ._plan import PlannedAction, TransferPlan
    from ._profiles import Profile, register_profile

# The public names load on first use (PEP 562), so `import pos3` stays cheap: the mirror, its
# engine and anyio come in with the first `pos3.mirror`, and aiobotocore with the first request.
_LAZY: dict[str, str] = {
    "AccessDeniedError": "._errors",
    "AsyncioRequiredError": "._errors",
    "EndpointError": "._errors",
    "Failure": "._errors",
    "IntegrityError": "._errors",
    "InvalidURLError": "._errors",
    "LockTimeoutError": "._errors",
    "NoMirrorError": "._errors",
    "NotFoundError": "._errors",
    "Pos3Error": "._errors",
    "ProfileError": "._errors",
    "RegistrationError": "._errors",
    "S3Error": "._errors",
    "TransferError": "._errors",
    "UnsafeKeyError": "._errors",
    "SyncMirror": "._facade",
    "download": "._facade",
    "ls": "._facade",
    "mirror": "._facade",
    "plan_download": "._facade",
    "plan_upload": "._facade",
    "request_upload": "._facade",
    "sync": "._facade",
    "upload": "._facade",
    "with_mirror": "._facade",
    "AsyncMirror": "._mirror",
    "amirror": "._mirror",
    "PlannedAction": "._plan",
    "TransferPlan": "._plan",
    "Profile": "._profiles",
    "register_profile": "._profiles",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pos3' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
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
