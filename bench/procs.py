"""Child processes (started, tracked, always stopped), /proc readings, free ports, readiness."""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import random
import resource
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

_LIBC = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1
_CHILDREN: list[subprocess.Popen[bytes]] = []


def raise_nofile() -> int:
    """Raise our soft RLIMIT_NOFILE to the hard limit; children inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return hard
    return soft


def _child_setup() -> None:
    # Runs in the child between fork and exec: die (SIGTERM) when the harness dies.
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def spawn(
    argv: Sequence[str],
    *,
    log: Path | None = None,
    stdin: int | None = subprocess.DEVNULL,
    stdout: int | None = None,
    new_session: bool = True,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start a tracked child in its own process group; stop_all() ends it for sure."""
    out: int | object
    logf = open(log, "ab") if log is not None else None  # handed to the child, closed below
    if stdout is not None:
        out = stdout
    elif logf is not None:
        out = logf
    else:
        out = subprocess.DEVNULL
    try:
        proc = subprocess.Popen(
            list(argv),
            stdin=stdin,
            stdout=out,  # type: ignore[arg-type]
            stderr=logf if logf is not None else subprocess.DEVNULL,
            start_new_session=new_session,
            preexec_fn=_child_setup,  # the harness is single-threaded
            close_fds=True,
            cwd=cwd,
        )
    finally:
        if logf is not None:
            logf.close()
    _CHILDREN.append(proc)
    return proc


def stop(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """Terminate the child's whole process group, wait, then kill what is left."""
    if proc in _CHILDREN:
        _CHILDREN.remove(proc)
    pgid = proc.pid  # spawned with start_new_session: the group is the child's pid
    try:
        if proc.poll() is None:
            _signal_group(pgid, proc, signal.SIGTERM)
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        # the leader may be gone while workers of its group live on (nginx): kill them all
        _signal_group(pgid, proc, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace)
    finally:
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


def _signal_group(pgid: int, proc: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)


def stop_all() -> None:
    for proc in list(reversed(_CHILDREN)):
        with contextlib.suppress(Exception):
            stop(proc, grace=3.0)


# ---------- /proc ----------


def _ppid_map() -> dict[int, int]:
    res: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        rest = raw[raw.rfind(")") + 2 :].split()
        res[int(entry)] = int(rest[1])
    return res


def tree_pids(root: int) -> list[int]:
    """The process and all its descendants (nginx master + worker, ...)."""
    parents = _ppid_map()
    out = [root]
    frontier = [root]
    while frontier:
        cur = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == cur and pid not in out:
                out.append(pid)
                frontier.append(pid)
    return out


def rss_kib(pids: Sequence[int]) -> int:
    """Summed VmRSS (KiB) of the given processes."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
                    break
        except OSError:
            continue
    return total


def cpu_seconds(pids: Sequence[int]) -> float:
    tck = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            raw = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        rest = raw[raw.rfind(")") + 2 :].split()
        total += (int(rest[11]) + int(rest[12])) / tck
    return total


# ---------- ports and readiness ----------


def _ephemeral_range() -> tuple[int, int]:
    try:
        lo, hi = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(lo), int(hi)
    except (OSError, ValueError):
        return 32768, 60999


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """Ports free for both TCP and UDP, below the ephemeral range (so no client's
    outgoing connection can take one between now and the moment a server binds it)."""
    lo_eph, _ = _ephemeral_range()
    hi = max(lo_eph - 1, 12000)
    lo = max(10000, hi - 12000)
    chosen: list[int] = []
    rng = random.Random()
    tries = 0
    while len(chosen) < count:
        tries += 1
        if tries > 10000:
            raise RuntimeError("no free ports found")
        port = rng.randint(lo, hi)
        if port in chosen:
            continue
        ok = True
        for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
            s = socket.socket(socket.AF_INET, kind)
            try:
                s.bind((host, port))
            except OSError:
                ok = False
            finally:
                s.close()
        if ok:
            chosen.append(port)
    return chosen


def tcp_accepts(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def udp_echoes(host: str, port: int, timeout: float = 0.2) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        try:
            s.connect((host, port))
            s.send(b"ready?" + b"\0" * 194)
            return bool(s.recv(2048))
        except OSError:
            return False


def wait_until(pred: Callable[[], bool], deadline_s: float, interval: float = 0.05) -> bool:
    """Poll pred() until it is true or deadline_s seconds have passed."""
    end = time.monotonic() + deadline_s
    while True:
        if pred():
            return True
        if time.monotonic() >= end:
            return False
        time.sleep(interval)


def conntrack_usage() -> tuple[int, int] | None:
    """(entries, max) of the kernel's connection tracking table, None without conntrack."""
    base = Path("/proc/sys/net/netfilter")
    try:
        return (
            int((base / "nf_conntrack_count").read_text()),
            int((base / "nf_conntrack_max").read_text()),
        )
    except (OSError, ValueError):
        return None


def take_lock(path: Path, deadline_s: float) -> int | None:
    """An exclusive flock on ``path`` (its fd; close it to let go), waiting at most
    ``deadline_s``; None when it stayed held."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)

    def free() -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    if wait_until(free, deadline_s, interval=1.0):
        return fd
    os.close(fd)
    return None
