"""``python -m tests.interop``: the integration and fault suites against Ceph RGW, over HTTP and HTTPS.

Run as root on Debian (``nox -s interop`` does). It builds (or reuses) the trixie chroot, starts
a one-node Ceph cluster with radosgw on 127.0.0.1, runs pytest once per scheme with the
``POS3_TEST_*`` variables pointing at the gateway (see tests/conftest.py), and stops every
daemon it started, whatever happened. Arguments after ``--`` go to pytest.

What runs: over HTTP, the whole integration and fault suites. Over HTTPS, the tests whose
outcome depends on the transport: the TLS tests (a Profile with its own keys and a ca_bundle,
AWS_CA_BUNDLE for isolated profiles and the default chain, the CLI's --ca-bundle) directly
against the gateway, and the basic, mirror, facade and training tests and the download faults
through the default chain with AWS_CA_BUNDLE. The rest repeats server-independent logic (the
behaviour audit, the CLI's argument handling, upload fault handling through a proxy that
speaks plain HTTP to pos3) and would double the session's time; --full-https runs it too.

Options:
    --cache DIR     where the chroot is kept between runs ($POS3_INTEROP_CACHE,
                    default /var/cache/pos3-interop)
    --mirror URL    Debian mirror ($POS3_INTEROP_MIRROR, default http://deb.debian.org/debian)
    --schemes LIST  http,https (default both)
    --workers N     pytest-xdist workers (default 2; 0 for none)
    --full-https    the whole integration and fault suites over HTTPS as well
    --bench         instead of the suites, run the benchmarks (``python -m benchmarks``) against
                    the gateway over HTTP; arguments after ``--`` go to the benchmarks
                    (``nox -s bench_rgw`` runs this)
"""

from __future__ import annotations

import argparse
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from tests.interop.rgw import ACCESS_KEY, MIRROR, SECRET_KEY, Cluster, InteropError, ensure_chroot, log, mounted

ROOT = Path(__file__).resolve().parents[2]
SUITES = ["tests/integration", "tests/faults"]
HTTPS_SUBSET = [
    "tests/integration/test_tls.py",
    "tests/integration/test_basic.py",
    "tests/integration/test_mirror.py",
    "tests/integration/test_facade.py",
    "tests/integration/test_training.py",
    "tests/faults/test_download_faults.py",
]
RGW_NAME = "Ceph RGW 18.2"  # how the Performance page names the gateway (Debian trixie's radosgw)
PYTEST_TIMEOUT = 1800.0  # one scheme's run; HTTP took 11-22 minutes on 2 cores shared with other sessions
LOCK_WAIT = 900.0


def _parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    parser = argparse.ArgumentParser(prog="python -m tests.interop", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path,
                        default=Path(os.environ.get("POS3_INTEROP_CACHE") or "/var/cache/pos3-interop"))
    parser.add_argument("--mirror", default=os.environ.get("POS3_INTEROP_MIRROR") or MIRROR)
    parser.add_argument("--schemes", default="http,https")
    parser.add_argument("--workers", type=int, default=2, help="pytest-xdist workers (0: none)")
    parser.add_argument("--full-https", action="store_true", help="the whole suites over HTTPS as well")
    parser.add_argument("--bench", action="store_true", help="run the benchmarks against the gateway instead")
    args = parser.parse_args(argv)
    schemes = [s for s in args.schemes.split(",") if s]
    if not schemes or set(schemes) - {"http", "https"}:
        parser.error("--schemes takes http, https or http,https")
    args.schemes = schemes
    return args, extra


def _lock(cache: Path) -> int:
    """One interop run per cache at a time (the chroot, its mounts and its cluster are shared)."""
    cache.mkdir(parents=True, exist_ok=True)
    fd = os.open(cache / "lock", os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + LOCK_WAIT
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise InteropError(f"another interop run held {cache}/lock for {LOCK_WAIT:.0f} s") from None
            time.sleep(2)


def _pytest(cluster: Cluster, scheme: str, suites: list[str], workers: int, extra: list[str], report: Path
            ) -> tuple[int, dict[str, int]]:
    endpoint = cluster.https_url if scheme == "https" else cluster.http_url
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POS3_TEST_"))}
    env.update(
        POS3_TEST_ENDPOINT=endpoint,
        POS3_TEST_ACCESS_KEY=ACCESS_KEY,
        POS3_TEST_SECRET_KEY=SECRET_KEY,
        POS3_TEST_REGION="us-east-1",
        POS3_TEST_ADDRESSING="path",
        POS3_TEST_REQUEST_LOG=f"rgw:{cluster.request_log}",
        PYTHONUNBUFFERED="1",
    )
    if scheme == "https":
        env["POS3_TEST_CA_BUNDLE"] = str(cluster.ca_bundle)
    cmd = [sys.executable, "-m", "pytest", *suites, "-p", "no:cacheprovider", "-q", "-rfEs", "--durations=15",
           f"--junitxml={report}", *(["-n", str(workers)] if workers else []), *extra]
    log(f"{scheme}: {' '.join(cmd[1:])} against {endpoint}")
    started = time.monotonic()
    try:
        status = subprocess.run(cmd, cwd=ROOT, env=env, timeout=PYTEST_TIMEOUT, check=False).returncode
    except subprocess.TimeoutExpired:
        log(f"{scheme}: pytest did not finish within {PYTEST_TIMEOUT:.0f} s")
        status = 124
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    try:
        suite = ET.parse(report).getroot()
        suite = suite if suite.tag == "testsuite" else suite.find("testsuite")  # type: ignore[assignment]
        for key in counts:
            counts[key] = int(suite.get(key, 0))
    except (OSError, ET.ParseError, AttributeError):
        pass
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    log(f"{scheme}: exit {status} in {time.monotonic() - started:.0f} s: {counts['passed']} passed, "
        f"{counts['skipped']} skipped, {counts['failures']} failed, {counts['errors']} errors")
    return status, counts


def _bench(cluster: Cluster, extra: list[str]) -> int:
    """The benchmark suite against the gateway over HTTP; its own section of the Performance page."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "BENCH_"))}
    env["PYTHONUNBUFFERED"] = "1"
    cmd = [sys.executable, "-m", "benchmarks", "--endpoint", cluster.http_url, "--access-key", ACCESS_KEY,
           "--secret-key", SECRET_KEY, "--region", "us-east-1", "--endpoint-name", RGW_NAME, *extra]
    log(f"bench: {' '.join(cmd[1:])}")
    return subprocess.run(cmd, cwd=ROOT, env=env, check=False).returncode


def main(argv: list[str]) -> int:
    if sys.platform != "linux" or os.geteuid() != 0:
        print("tests.interop: run as root on Linux (it builds a chroot and starts Ceph daemons)", file=sys.stderr)
        return 2
    args, extra = _parse(argv)
    from tests.interop.rgw import host_mount_namespace, in_private_mount_namespace

    if not in_private_mount_namespace():
        # Mounts inside the chroot must vanish with this run, however it ends: a mount namespace
        # of its own takes them along when its last process exits.
        unshare = shutil.which("unshare")
        if unshare is None:
            print("tests.interop: unshare (util-linux) is missing", file=sys.stderr)
            return 2
        os.environ["POS3_INTEROP_HOST_MOUNT_NS"] = host_mount_namespace()
        os.execv(unshare, [unshare, "--mount", "--propagation", "private", "--",
                           sys.executable, "-m", "tests.interop", *argv])
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally blocks below
    started = time.monotonic()
    results: dict[str, tuple[int, dict[str, int]]] = {}
    try:
        lock = _lock(args.cache)
        try:
            root = ensure_chroot(args.cache, args.mirror)
            with mounted(root):
                cluster = Cluster(root)
                try:
                    cluster.start()
                    if args.bench:
                        return _bench(cluster, extra)
                    for scheme in args.schemes:
                        suites = HTTPS_SUBSET if scheme == "https" and not args.full_https else SUITES
                        results[scheme] = _pytest(cluster, scheme, suites, args.workers, extra,
                                                  cluster.data / f"junit-{scheme}.xml")
                finally:
                    cluster.stop()
        finally:
            os.close(lock)
    except InteropError as exc:
        log(f"FAILED: {exc}")
        return 1
    finally:
        log(f"total {time.monotonic() - started:.0f} s")
    for scheme, (status, counts) in results.items():
        log(f"summary {scheme}: {counts['passed']} passed, {counts['skipped']} skipped, "
            f"{counts['failures'] + counts['errors']} failed (exit {status})")
    return max((status for status, _ in results.values()), default=1)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
