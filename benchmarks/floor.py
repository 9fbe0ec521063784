"""What botocore's request pipeline costs: bare aiobotocore, no pos3, the same server and objects.

Run as ``python -m benchmarks.floor ENDPOINT ACCESS_KEY SECRET_KEY REGION BUCKET PREFIX N OUT.json``.
It GETs the first N objects below PREFIX (reading each body whole) and PUTs N objects of the same
size below ``floor/``, 10 requests in flight (pos3's old default), with botocore's default client
settings, and reports the CPU time of this process per request, start-up and client creation
left out. When pos3's CPU per request is compared with a target, this is what aiobotocore alone
costs on the same machine in the same run (pos3 sends most GETs and PUTs without that pipeline:
see `pos3/_direct.py`).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any


async def _run(endpoint: str, ak: str, sk: str, region: str, bucket: str, prefix: str, n: int) -> dict[str, float]:
    from aiobotocore.config import AioConfig
    from aiobotocore.session import AioSession

    config = AioConfig(max_pool_connections=20, retries={"mode": "standard", "total_max_attempts": 5})
    async with AioSession().create_client("s3", endpoint_url=endpoint, region_name=region, aws_access_key_id=ak,
                                          aws_secret_access_key=sk, config=config) as s3:
        keys: list[str] = []
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        async for page in pages:
            keys += [o["Key"] for o in page.get("Contents", ())]
            if len(keys) >= n:
                break
        keys = keys[:n]
        sem = asyncio.Semaphore(10)
        size = 0

        async def get(key: str) -> None:
            nonlocal size
            async with sem:
                resp = await s3.get_object(Bucket=bucket, Key=key)
                async with resp["Body"] as body:
                    size = len(await body.read())

        async def put(i: int, data: bytes) -> None:
            async with sem:
                await s3.put_object(Bucket=bucket, Key=f"floor/{i:06d}", Body=data)

        out: dict[str, float] = {"requests": float(len(keys))}
        await get(keys[0])  # connections and handlers warm, as in a long transfer
        c0 = time.process_time()
        await asyncio.gather(*(get(k) for k in keys))
        out["get_ms"] = (time.process_time() - c0) / len(keys) * 1000
        data = bytes(size)
        c0 = time.process_time()
        await asyncio.gather(*(put(i, data) for i in range(len(keys))))
        out["put_ms"] = (time.process_time() - c0) / len(keys) * 1000
        out["object_bytes"] = float(size)
        for i in range(0, len(keys), 1000):
            batch: Any = {"Objects": [{"Key": f"floor/{j:06d}"} for j in range(i, min(i + 1000, len(keys)))]}
            await s3.delete_objects(Bucket=bucket, Delete=batch)
        return out


def main(argv: list[str]) -> int:
    endpoint, ak, sk, region, bucket, prefix, n, out = argv
    result = asyncio.run(_run(endpoint, ak, sk, region, bucket, prefix, int(n)))
    with open(out, "w") as fh:
        json.dump(result, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
