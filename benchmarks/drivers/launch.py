"""Start one command and report its costs as JSON: run as ``python -I -S launch.py OUT -- CMD ...``.

A forked child inherits its parent's peak-RSS mark until exec, so a client started straight from the
benchmark process would report at least the benchmark's own RSS. This launcher is a small process
(about 10 MiB): clients spawned from it report their own peak. It also times the client alone, without
its own start-up.
"""

import json
import os
import sys
import time


def main() -> int:
    out, sep, cmd = sys.argv[1], sys.argv[2], sys.argv[3:]
    if sep != "--" or not cmd:
        print("usage: launch.py OUT -- CMD ...", file=sys.stderr)
        return 2
    start = time.perf_counter()
    pid = os.posix_spawn(cmd[0], cmd, os.environ)
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - start
    with open(out, "w") as fh:
        json.dump({"wall": wall, "user": usage.ru_utime, "sys": usage.ru_stime, "maxrss_kib": usage.ru_maxrss,
                   "returncode": os.waitstatus_to_exitcode(status)}, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
