"""The one entry point: ``nox -s tests | lint | typecheck | demo | bench | docs | interop``."""

from __future__ import annotations

import os

import nox

nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = False

LOCATIONS = ["pos3", "tests", "benchmarks", "docs", "noxfile.py"]


@nox.session
def tests(session: nox.Session) -> None:
    """Unit, integration, fault and docs-example tests against a real moto server."""
    session.install("-e", ".[test]")
    # One moto server per xdist worker: request counts stay per test (tests in a worker run in turn).
    # At least 4 workers, even on 2 cores: the suite waits more than it computes (outages, backoff,
    # stall timeouts, subprocesses starting; measured 586 s of CPU for 723 s on 2 cores, 40 % busy),
    # and waits of one worker overlap work of another.
    workers = str(max(4, os.cpu_count() or 1))
    # Bytecode is cached even where the environment says not to (PYTHONDONTWRITEBYTECODE=1): every
    # worker imports and assertion-rewrites the whole suite (9 s of CPU each without a cache, 4 s
    # with), and every CLI test starts a Python that imports pos3. Long tests run first (see
    # tests/conftest.py), and each worker is handed one test at a time: xdist's default first hands
    # each worker a quarter of its share in one consecutive block, so one worker got every long
    # test (measured: 260 s of tests on one worker, 130 s on each of the others).
    args = ["-q", "-n", workers, "--maxschedchunk", "1"]
    session.run("pytest", *(session.posargs or args), env={"PYTHONDONTWRITEBYTECODE": ""})


@nox.session
def interop(session: nox.Session) -> None:
    """The integration and fault suites against Ceph RGW 18.2 on 127.0.0.1, over HTTP and HTTPS.

    Root on Debian only: builds (once; cached in /var/cache/pos3-interop) a trixie chroot with
    Debian's radosgw, starts a one-node cluster, runs the suites, stops every daemon it started.
    Arguments after ``--`` go to pytest. See tests/interop/__main__.py.
    """
    session.install("-e", ".[test]", "pytest-xdist>=3.5")
    session.run("python", "-m", "tests.interop", *session.posargs, env={"PYTHONUNBUFFERED": "1"})


@nox.session
def lint(session: nox.Session) -> None:
    """ruff: lint and import order."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", *LOCATIONS)


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the package, with the aiobotocore S3 stubs."""
    session.install("-e", ".", "mypy>=1.10", "types-aiobotocore-s3")
    session.run("mypy", "--strict", "pos3")


@nox.session
def demo(session: nox.Session) -> None:
    """Run the main job against an embedded local S3 endpoint (moto); no AWS account needed."""
    session.install("-e", ".[demo]")
    session.run("python", "docs/examples/demo.py", env={"PYTHONUNBUFFERED": "1"})


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks against peers: tables in docs/, charts for the Performance page."""
    session.install("-e", ".[bench]")
    session.run("python", "-m", "benchmarks", *session.posargs, env={"PYTHONUNBUFFERED": "1"})


@nox.session
def bench_rgw(session: nox.Session) -> None:
    """The benchmarks against Ceph RGW 18.2 on 127.0.0.1 (the interop chroot and cluster; root on Debian).

    Arguments after ``--`` go to the benchmarks, e.g. ``nox -s bench_rgw -- --scale 0 --planner 0``.
    """
    session.install("-e", ".[bench]")
    session.run("python", "-m", "tests.interop", "--bench", "--", *session.posargs, env={"PYTHONUNBUFFERED": "1"})


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation site strictly (broken links and references fail)."""
    session.install("-e", ".[docs]")
    session.run("mkdocs", "build", "--strict", "--site-dir", os.path.join(session.create_tmp(), "site"))
