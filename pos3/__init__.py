"""pos3: mirror S3 prefixes onto fast local disk and hand plain `pathlib.Path`s to any code.

```python
with pos3.mirror():
    data = pos3.download("s3://bucket/dataset")      # a local Path; only changed files fetched
    out = pos3.upload("s3://bucket/results", interval=60)
```
"""

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
from ._version import __version__

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
