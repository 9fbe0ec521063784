"""Drive s3fs (fsspec) for one recursive copy; run as a script with the s3fs venv's Python.

    python s3fs_client.py download s3://bucket/prefix/ LOCAL ENDPOINT
    python s3fs_client.py upload   s3://bucket/prefix/ LOCAL ENDPOINT

s3fs has no sync: a copy moves everything, so it only takes part in the cold scenarios.
"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    op, url, local, endpoint = argv
    import s3fs

    fs = s3fs.S3FileSystem(key="testing", secret="testing", endpoint_url=endpoint,
                           client_kwargs={"region_name": "us-east-1"})
    path = url.removeprefix("s3://").rstrip("/")
    if op == "download":
        fs.get(path + "/", local.rstrip("/") + "/", recursive=True)
    else:
        fs.put(local.rstrip("/") + "/", path + "/", recursive=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
