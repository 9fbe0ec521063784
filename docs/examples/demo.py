"""The main job of pos3, end to end, against an embedded local S3 endpoint (moto).

Run it with ``nox -s demo`` (or ``python docs/examples/demo.py`` with ``pos3[demo]`` installed).
No AWS account is needed: the script starts a moto S3 server on 127.0.0.1 and points pos3 at it
with the standard ``AWS_ENDPOINT_URL`` setting.
"""

from __future__ import annotations

import csv
import logging
import os
import tempfile
import time
from pathlib import Path

import boto3
from moto.server import ThreadedMotoServer

import pos3


def start_local_s3() -> tuple[ThreadedMotoServer, str]:
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # the server's per-request log
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    os.environ.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="demo",
        AWS_SECRET_ACCESS_KEY="demo",
        AWS_DEFAULT_REGION="us-east-1",
    )
    return server, endpoint


def seed(endpoint: str) -> None:
    s3 = boto3.client("s3", endpoint_url=endpoint)
    s3.create_bucket(Bucket="demo")
    for i in range(50):
        rows = "\n".join(f"{i},{j},{(i * j) % 7}" for j in range(200))
        s3.put_object(Bucket="demo", Key=f"dataset/part-{i:03}.csv", Body=f"a,b,c\n{rows}\n".encode())


def job(cache_root: Path, show_progress: bool) -> None:
    with pos3.mirror(cache_root=cache_root, show_progress=show_progress):
        data = pos3.download("s3://demo/dataset")          # a plain local folder
        out = pos3.upload("s3://demo/results", interval=60)  # uploaded on exit
        total = 0
        for part in sorted(data.glob("*.csv")):               # code that only knows local files
            with part.open() as fh:
                total += sum(int(row["c"]) for row in csv.DictReader(fh))
        (out / "summary.txt").write_text(f"sum of column c: {total}\n")


def main() -> None:
    server, endpoint = start_local_s3()
    try:
        seed(endpoint)
        with tempfile.TemporaryDirectory() as tmp:
            cache = Path(tmp) / "cache"
            start = time.perf_counter()
            job(cache, show_progress=True)
            first = time.perf_counter() - start
            start = time.perf_counter()
            job(cache, show_progress=False)                  # nothing changed: only LIST requests
            second = time.perf_counter() - start
            s3 = boto3.client("s3", endpoint_url=endpoint)
            summary = s3.get_object(Bucket="demo", Key="results/summary.txt")["Body"].read().decode()
            print(f"first run (cold cache): {first:.2f} s; second run (no changes): {second:.2f} s")
            print(f"s3://demo/results/summary.txt -> {summary.strip()}")
            mirror = cache / "_" / "demo" / "dataset"
            files = sorted(mirror.glob("*.csv"))
            print(f"local mirror: {len(files)} files ({files[0].name} ... {files[-1].name}) in {mirror}")
            print("  (the demo's cache is a temporary folder, removed as the demo ends)")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
