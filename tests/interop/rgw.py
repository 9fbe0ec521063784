"""Ceph RADOS Gateway on 127.0.0.1, from Debian's packages, for the interop session (root only).

Debian 12's ``radosgw`` is 16.2; trixie's 18.2 ("reef") needs glibc 2.38, so it runs in a
``debootstrap --variant=minbase trixie`` chroot, built once and cached (see `ensure_chroot`).

The cluster (`Cluster`) is the smallest real one: one monitor and one OSD with the memstore
backend (RAM: every start is a fresh, empty cluster), no manager, ``auth none``; the gateway
listens on 127.0.0.1 over HTTP and over HTTPS with a certificate of a private CA made for the
run. Its access log (``debug rgw = 1``: one ``beast:`` line per request) is the request log of
the tests. Not the SQLite "dbstore" backend: in 18.2 it ignores range offsets and corrupts
multipart objects.

Every daemon runs in the foreground as a child of this process (``chroot`` execs it, so the
child's PID is the daemon's), dies with this process (``PR_SET_PDEATHSIG``), and is stopped by
PID in `Cluster.stop`. Mounts (``/proc``, ``/dev``, ``/sys`` in the chroot) are made only in a
private mount namespace (see ``__main__``), so they vanish with it, whatever happens.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.certs import make_certificates

__all__ = ["ACCESS_KEY", "SECRET_KEY", "Cluster", "InteropError", "ensure_chroot"]

SUITE = "trixie"
PACKAGES = ("radosgw", "ceph-common", "ceph-mon", "ceph-osd")
# Bump when the chroot's recipe changes: a cached chroot with another stamp is rebuilt.
RECIPE = f"1 {SUITE} {' '.join(PACKAGES)}"
STAMP = ".pos3-interop-ready"
MIRROR = "http://deb.debian.org/debian"
ACCESS_KEY = "POS3INTEROPACCESSKEY"
SECRET_KEY = "pos3-interop-secret-key-0123456789abcdef"
IN_ROOT_PATH = "PATH=/usr/sbin:/usr/bin:/sbin:/bin"
DATA = "/srv/pos3-interop"  # the cluster's files, inside the chroot; wiped at every start
_PR_SET_PDEATHSIG = 1


class InteropError(RuntimeError):
    """The interop environment could not be built or started; the message says where to look."""


def log(message: str) -> None:
    print(f"[interop {time.strftime('%H:%M:%S')}] {message}", flush=True)


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return f"({path}: not written)"
    return f"--- last {min(lines, len(text))} lines of {path} ---\n" + "\n".join(text[-lines:])


def _run(cmd: Sequence[str], *, timeout: float, what: str, env: dict[str, str] | None = None) -> str:
    """Run ``cmd`` to completion within ``timeout`` seconds; its output, or `InteropError` with it."""
    try:
        done = subprocess.run(list(cmd), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              timeout=timeout, env=env, text=True, errors="replace", check=False)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout if isinstance(exc.stdout, str) else (exc.stdout or b"").decode(errors="replace")
        raise InteropError(f"{what}: no result after {timeout:.0f} s: {' '.join(cmd)}\n{out[-4000:]}") from None
    if done.returncode != 0:
        raise InteropError(f"{what}: exit status {done.returncode}: {' '.join(cmd)}\n{done.stdout[-4000:]}")
    return done.stdout


def _retry(what: str, attempts: int, action: Callable[[], object], between: Callable[[], object] | None = None
           ) -> None:
    """Run ``action`` up to ``attempts`` times (downloads fail now and then); the last error propagates."""
    for attempt in range(1, attempts + 1):
        try:
            action()
            return
        except InteropError as exc:
            if attempt == attempts:
                raise
            log(f"{what} failed (attempt {attempt} of {attempts}), retrying: {str(exc).splitlines()[0]}")
            time.sleep(5 * attempt)
            if between is not None:
                between()


def _mounts_below(root: Path) -> list[str]:
    """Mount points at or below ``root`` in this process's mount namespace."""
    prefix = str(root.resolve())
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point == prefix or point.startswith(prefix + "/"):
            points.append(point)
    return points


_HOST_NS = "POS3_INTEROP_HOST_MOUNT_NS"  # the mount namespace this run was started in


def host_mount_namespace() -> str:
    """The mount namespace the run started in (recorded before re-running under ``unshare``)."""
    return os.environ.get(_HOST_NS) or os.readlink("/proc/self/ns/mnt")


def in_private_mount_namespace() -> bool:
    """Whether this process runs in a mount namespace other than the one the run started in."""
    return _HOST_NS in os.environ and os.readlink("/proc/self/ns/mnt") != os.environ[_HOST_NS]


@contextlib.contextmanager
def mounted(root: Path) -> Iterator[None]:
    """``/proc``, ``/sys`` and ``/dev`` inside the chroot, for as long as the block runs."""
    if not in_private_mount_namespace():
        raise InteropError("refusing to mount inside the chroot outside a private mount namespace")
    done: list[Path] = []
    try:
        for source, target, args in (("proc", "proc", ["-t", "proc"]), ("/sys", "sys", ["--bind"]),
                                     ("/dev", "dev", ["--bind"])):
            point = root / target
            point.mkdir(exist_ok=True)
            _run(["mount", *args, source, str(point)], timeout=30, what=f"mount {point}")
            done.append(point)
        yield
    finally:
        for point in reversed(done):
            subprocess.run(["umount", "-l", str(point)], check=False, timeout=30)


def _chroot_cmd(root: Path, *cmd: str) -> list[str]:
    return ["chroot", str(root), "/usr/bin/env", "-i", IN_ROOT_PATH, "HOME=/root", "LANG=C.UTF-8",
            "DEBIAN_FRONTEND=noninteractive", *cmd]


def _host_debootstrap() -> str:
    found = shutil.which("debootstrap")
    if found:
        return found
    log("installing debootstrap on the host (apt-get)")
    apt = ["apt-get", "-o", "Acquire::Retries=5", "-o", "Dpkg::Use-Pty=0"]
    _retry("apt-get update", 3, lambda: _run([*apt, "update"], timeout=300, what="apt-get update"))
    _retry("apt-get install debootstrap", 3, lambda: _run(
        [*apt, "install", "-y", "--no-install-recommends", "debootstrap"], timeout=300,
        what="apt-get install debootstrap", env=dict(os.environ, DEBIAN_FRONTEND="noninteractive")))
    found = shutil.which("debootstrap")
    if not found:
        raise InteropError("debootstrap is still missing after apt-get install debootstrap")
    return found


def _wipe(root: Path) -> None:
    mounts = _mounts_below(root)
    if mounts:
        raise InteropError(f"refusing to delete {root}: still mounted: {', '.join(mounts)}")
    shutil.rmtree(root, ignore_errors=True)
    if root.exists():
        raise InteropError(f"could not delete {root}")


def ensure_chroot(cache: Path, mirror: str = MIRROR) -> Path:
    """The trixie chroot with radosgw, ceph-mon and ceph-osd under ``cache``; built when missing.

    A chroot is used only once its build finished (a stamp file records the recipe); a partial
    or outdated one is deleted and built again. Downloaded packages are kept in ``cache/debs``,
    so a rebuild downloads little. Every download is retried.
    """
    root = cache / SUITE
    stamp = root / STAMP
    if stamp.is_file() and stamp.read_text().strip() == RECIPE:
        log(f"chroot: cached at {root}")
        return root
    started = time.monotonic()
    if root.exists():
        log(f"chroot: {root} is incomplete or outdated; building it again")
        _wipe(root)
    debootstrap = _host_debootstrap()
    debs = cache / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    log(f"chroot: debootstrap --variant=minbase {SUITE} from {mirror} (a few minutes)")
    _retry("debootstrap", 3, lambda: _run(
        [debootstrap, "--variant=minbase", f"--cache-dir={debs}", SUITE, str(root), mirror],
        timeout=900, what="debootstrap"), between=lambda: _wipe(root))
    # The chroot resolves names like the host; no service may start inside it.
    shutil.copyfile("/etc/resolv.conf", root / "etc" / "resolv.conf")
    policy = root / "usr" / "sbin" / "policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    apt = ("apt-get", "-o", "Acquire::Retries=5", "-o", "Acquire::http::Timeout=60", "-o", "Dpkg::Use-Pty=0")
    with mounted(root):
        _retry("apt-get update (chroot)", 3, lambda: _run(
            _chroot_cmd(root, *apt, "update"), timeout=600, what="apt-get update in the chroot"))
        log(f"chroot: apt-get install {' '.join(PACKAGES)}")
        _retry("apt-get install (chroot)", 3, lambda: _run(
            _chroot_cmd(root, *apt, "install", "-y", "--no-install-recommends", *PACKAGES),
            timeout=1200, what="apt-get install in the chroot"),
            between=lambda: subprocess.run(_chroot_cmd(root, "dpkg", "--configure", "-a"), check=False,
                                           timeout=600, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        _run(_chroot_cmd(root, "apt-get", "clean"), timeout=120, what="apt-get clean")
        version = _run(_chroot_cmd(root, "radosgw", "--version"), timeout=60, what="radosgw --version").strip()
    stamp.write_text(RECIPE + "\n")
    log(f"chroot: ready in {time.monotonic() - started:.0f} s ({version})")
    return root


def _free_ports(count: int) -> list[int]:
    socks = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _die_with_parent() -> None:  # runs in the child between fork and exec
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    os.setsid()


_CONF = """\
[global]
        fsid = {fsid}
        mon host = v2:127.0.0.1:{mon_port}
        mon initial members = a
        public network = 127.0.0.0/8
        auth cluster required = none
        auth service required = none
        auth client required = none
        ms bind ipv6 = false
        ms bind msgr1 = false
        osd pool default size = 1
        osd pool default min size = 1
        mon allow pool size one = true
        mon warn on pool no redundancy = false
        osd pool default pg num = 8
        osd pool default pgp num = 8
        osd pool default pg autoscale mode = off
        mon max pg per osd = 1000
        osd crush chooseleaf type = 0
        log file = {data}/log/$name.log
        admin socket = {data}/run/$name.asok
        pid file = {data}/run/$name.pid
        log to stderr = false
        err to stderr = true

[client]
        ; radosgw's built-in default is "secure", which auth none cannot give (-13 from the mon)
        ms mon client mode = crc

[mon]
        mon data = {data}/mon-$id
        mon data avail warn = 1
        mon data avail crit = 0

[osd]
        osd data = {data}/osd-$id
        osd objectstore = memstore
        memstore device bytes = {memstore_bytes}
        osd max object name len = 460
        osd max object namespace len = 64
        osd check max object name len on startup = false

[client.rgw.pos3]
        rgw frontends = beast endpoint=127.0.0.1:{http_port} ssl_endpoint=127.0.0.1:{https_port} \
ssl_certificate={data}/tls/server.crt ssl_private_key={data}/tls/server.key
        debug rgw = 1
"""


@dataclass
class Cluster:
    """One mon, one memstore OSD and one radosgw in the chroot at ``root``; `start`, then `stop`.

    Attributes:
        http_url / https_url: The gateway's endpoints (after `start`).
        ca_bundle: The private CA that signed the HTTPS certificate (a host path).
        request_log: The gateway's log, with one ``beast:`` line per request (a host path).
    """

    root: Path
    memstore_bytes: int = 8 << 30
    http_url: str = ""
    https_url: str = ""
    _procs: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)

    @property
    def data(self) -> Path:
        return self.root / DATA.lstrip("/")

    @property
    def ca_bundle(self) -> Path:
        return self.data / "tls" / "ca.pem"

    @property
    def request_log(self) -> Path:
        return self.data / "log" / "client.rgw.pos3.log"

    def _ceph(self, *args: str, timeout: float, what: str) -> str:
        return _run(_chroot_cmd(self.root, *args[:1], "-c", f"{DATA}/ceph.conf", *args[1:]), timeout=timeout,
                    what=what)

    def _daemon(self, name: str, *args: str) -> None:
        stdio = (self.data / "log" / f"{name}.stdio").open("wb")
        with stdio:
            proc = subprocess.Popen(_chroot_cmd(self.root, *args[:1], "-f", "-c", f"{DATA}/ceph.conf", *args[1:]),
                                    stdin=subprocess.DEVNULL, stdout=stdio, stderr=subprocess.STDOUT,
                                    preexec_fn=_die_with_parent)
        self._procs.append((name, proc))
        log(f"started {name} (pid {proc.pid})")

    def _diagnose(self, name: str) -> str:
        logs = {"mon": "mon.a.log", "osd": "osd.0.log", "radosgw": "client.rgw.pos3.log"}
        out = [_tail(self.data / "log" / f"{name}.stdio", 20)]
        if name in logs:
            out.append(_tail(self.data / "log" / logs[name]))
        return "\n".join(out)

    def _check_alive(self) -> None:
        for name, proc in self._procs:
            if proc.poll() is not None:
                raise InteropError(f"{name} (pid {proc.pid}) exited with status {proc.returncode}\n"
                                   + self._diagnose(name))

    def _wait(self, what: str, name: str, timeout: float, ready: Callable[[], bool]) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self._check_alive()
            if ready():
                return
            if time.monotonic() > deadline:
                raise InteropError(f"{what}: not ready after {timeout:.0f} s\n" + self._diagnose(name))
            time.sleep(0.5)

    def start(self) -> None:
        started = time.monotonic()
        mon_port, http_port, https_port = _free_ports(3)
        if self.data.exists():
            shutil.rmtree(self.data)
        for sub in ("mon-a", "osd-0", "log", "run", "tls"):
            (self.data / sub).mkdir(parents=True)
        make_certificates(self.data / "tls")
        (self.data / "ceph.conf").write_text(_CONF.format(
            fsid=uuid.uuid4(), mon_port=mon_port, http_port=http_port, https_port=https_port, data=DATA,
            memstore_bytes=self.memstore_bytes))

        self._ceph("monmaptool", "--create", "--fsid", self._fsid(), "--addv", "a", f"[v2:127.0.0.1:{mon_port}]",
                   f"{DATA}/monmap", timeout=60, what="monmaptool")
        self._ceph("ceph-mon", "--mkfs", "-i", "a", "--monmap", f"{DATA}/monmap", timeout=120, what="ceph-mon --mkfs")
        self._daemon("mon", "ceph-mon", "-i", "a")

        osd_uuid = str(uuid.uuid4())
        deadline = time.monotonic() + 90
        while True:  # "osd new" is the first command the mon must answer
            self._check_alive()
            try:
                osd_id = self._ceph("ceph", "--connect-timeout", "15", "osd", "new", osd_uuid, timeout=30,
                                    what="ceph osd new").strip()
                break
            except InteropError:
                if time.monotonic() > deadline:
                    raise InteropError("the monitor did not answer 'ceph osd new' within 90 s\n"
                                       + self._diagnose("mon")) from None
                time.sleep(1)
        self._ceph("ceph-osd", "-i", osd_id, "--mkfs", "--osd-uuid", osd_uuid, timeout=120, what="ceph-osd --mkfs")
        self._daemon("osd", "ceph-osd", "-i", osd_id)

        def osd_up() -> bool:
            try:
                stat = json.loads(self._ceph("ceph", "--connect-timeout", "15", "osd", "stat", "-f", "json",
                                             timeout=30, what="ceph osd stat"))
            except (InteropError, ValueError):
                return False
            return int(stat.get("num_up_osds", 0)) >= 1

        self._wait("the OSD", "osd", 120, osd_up)
        self._ceph("radosgw-admin", "-n", "client.rgw.pos3", "user", "create", "--uid", "pos3",
                   "--display-name", "pos3 interop", "--access-key", ACCESS_KEY, "--secret", SECRET_KEY,
                   timeout=180, what="radosgw-admin user create")
        self._daemon("radosgw", "radosgw", "-n", "client.rgw.pos3")
        self.http_url = f"http://127.0.0.1:{http_port}"
        self.https_url = f"https://127.0.0.1:{https_port}"
        self._wait("radosgw over HTTP", "radosgw", 120, lambda: self._answers(self.http_url))
        self._wait("radosgw over HTTPS", "radosgw", 60, lambda: self._answers(self.https_url))
        log(f"RGW up in {time.monotonic() - started:.0f} s: {self.http_url} {self.https_url}")

    def _fsid(self) -> str:
        for line in (self.data / "ceph.conf").read_text().splitlines():
            if line.strip().startswith("fsid ="):
                return line.split("=", 1)[1].strip()
        raise InteropError("ceph.conf has no fsid")

    def _answers(self, url: str) -> bool:
        """Whether the gateway answers an HTTP request (any status) at ``url``."""
        import ssl

        context = ssl.create_default_context(cafile=str(self.ca_bundle)) if url.startswith("https") else None
        try:
            with urllib.request.urlopen(url + "/", timeout=5, context=context):
                return True
        except urllib.error.HTTPError:
            return True
        except (OSError, ValueError):
            return False

    def stop(self) -> None:
        """Stop every daemon this cluster started, by PID, the gateway first; bounded."""
        for name, proc in reversed(self._procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    log(f"{name} (pid {proc.pid}) ignored SIGTERM for 15 s; killing it")
                    proc.kill()
                    proc.wait(15)
            log(f"stopped {name} (pid {proc.pid}, status {proc.returncode})")
        self._procs.clear()
