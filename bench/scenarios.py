"""Scenarios: each drives the C load generator against one proxy and returns its metrics."""

from __future__ import annotations

import json
import selectors
import struct
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import procs
from bench.proxies import Proxy

SHM_FMT = "<16Q"  # must match struct shm in loadgen.c
SHM_FIELDS = (
    "magic pid bulk_accepted bulk_open bulk_rx bulk_tx "
    "echo_accepted echo_open echo_rx echo_tx udp_rx udp_tx "
    "echo_port0_accepted echo_port1_accepted echo_port2_accepted echo_port3_accepted"
).split()
ECHO_PORT_FIELDS = [f"echo_port{i}_accepted" for i in range(4)]


class ScenarioError(RuntimeError):
    pass


@dataclass
class Settings:
    duration: float = 3.0  # measured window of the timed scenarios, seconds
    warmup: float = 0.5
    rtt_count: int = 20000
    rtt_duration: float = 2.0
    conn_concurrency: int = 32
    conn_size: int = 64
    conn_max: int = 15000  # count bound per window: conntrack keeps closed ones 120 s
    udp_sockets: int = 64
    udp_size: int = 200
    udp_timeout_ms: int = 200
    idle_conns: int = 5000
    idle_timeout: float = 30.0


@dataclass
class Ctx:
    loadgen: Path
    shm: Path
    logs: Path
    settings: Settings
    backend_pid: int = 0
    tls_backend_pid: int = 0  # the SNI scenarios' TLS backend (bench/sni_proxies.py)
    prefix: list[str] = field(default_factory=list)  # runs a client in the client namespace
    client_args: list[str] = field(default_factory=list)  # --src-base, --allow-target there

    def client(self, mode: str, *args: str) -> list[str]:
        """The argv of one loadgen client (in the client namespace, when there is one)."""
        return [*self.prefix, str(self.loadgen), mode, *args, *self.client_args]


@dataclass(frozen=True)
class Metric:
    key: str
    short: str  # column header
    label: str  # legend
    better: str  # "higher", "lower" or "" (context only)
    fmt: str = "{:.0f}"
    ratio: bool = True  # print ours/other ratios for it


@dataclass
class Scenario:
    name: str
    title: str
    run: Callable[[Ctx, Proxy], dict[str, Any]]
    metrics: list[Metric] = field(default_factory=list)
    udp: bool = False  # needs a UDP-capable proxy
    needs_process: bool = False  # meaningless without a proxy process (RSS)

    def applies_to(self, proxy: Proxy) -> str | None:
        if self.udp and not proxy.udp:
            return f"{proxy.name} does not proxy UDP"
        if self.needs_process and not proxy.measured:
            return f"{proxy.name} has no proxy process"
        return None


def read_shm(path: Path) -> dict[str, int]:
    raw = path.read_bytes()[: struct.calcsize(SHM_FMT)]
    return dict(zip(SHM_FIELDS, struct.unpack(SHM_FMT, raw), strict=True))


def _pids_arg(proxy: Proxy) -> list[str]:
    return ["--pids", ",".join(str(p) for p in proxy.pids)] if proxy.pids else []


def _gen_arg(ctx: Ctx) -> list[str]:
    return ["--gen-pids", str(ctx.backend_pid)] if ctx.backend_pid else []


def _cores(res: dict[str, Any]) -> dict[str, float | None]:
    """CPU cores busy during the window: the proxy's, and the load side's (client + backend)."""
    secs = float(res["secs"]) or 1e-9
    cpu = _cpu(res)
    gen = res.get("gen_cpu_s")
    return {
        "proxy_cores": cpu / secs if cpu is not None else None,
        "gen_cores": float(gen) / secs if gen is not None else None,
    }


def run_loadgen(ctx: Ctx, args: list[str], timeout: float) -> dict[str, Any]:
    """Run one bounded loadgen client; return the JSON object it printed."""
    proc = procs.spawn(ctx.client(*args), stdout=subprocess.PIPE, log=ctx.logs / "loadgen.log")
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise ScenarioError(f"loadgen {args[0]} did not finish within {timeout:.0f}s") from exc
    finally:
        procs.stop(proc, grace=2.0)
    lines = out.decode(errors="replace").strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise ScenarioError(
            f"loadgen {args[0]} failed (exit {proc.returncode}); see {ctx.logs / 'loadgen.log'}"
        )
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def _cpu(res: dict[str, Any]) -> float | None:
    cpu = float(res.get("cpu_s", -1.0))
    return cpu if cpu >= 0 else None


# ---------- TCP bulk ----------


def _bulk(streams: int) -> Callable[[Ctx, Proxy], dict[str, Any]]:
    def run(ctx: Ctx, proxy: Proxy) -> dict[str, Any]:
        s = ctx.settings
        res = run_loadgen(
            ctx,
            [
                "bulk",
                "--host", proxy.target_host(),
                "--port", str(proxy.target().bulk),
                "--streams", str(streams),
                "--duration", str(s.duration),
                "--warmup", str(s.warmup),
                "--shm", str(ctx.shm),
                *_pids_arg(proxy),
                *_gen_arg(ctx),
            ],
            timeout=s.duration + s.warmup + 30,
        )  # fmt: skip
        if res["errors"]:
            raise ScenarioError(f"{res['errors']} of {streams} streams broke: {res}")
        total = res["down_bytes"] + res["up_bytes"]
        secs = res["secs"]
        cpu = _cpu(res)
        return {
            "mb_s": total / secs / 1e6,
            "down_mb_s": res["down_bytes"] / secs / 1e6,
            "up_mb_s": res["up_bytes"] / secs / 1e6,
            "cpu_s_per_gb": cpu / (total / 1e9) if cpu is not None and total else None,
            **_cores(res),
            "raw": res,
        }

    return run


BULK_METRICS = [
    Metric("mb_s", "MB/s", "MB/s, both directions summed", "higher"),
    Metric("down_mb_s", "down MB/s", "MB/s backend to client", "higher", ratio=False),
    Metric("up_mb_s", "up MB/s", "MB/s client to backend", "higher", ratio=False),
    Metric("cpu_s_per_gb", "CPU-s/GB", "proxy CPU seconds per GB moved", "lower", "{:.3f}"),
    Metric("proxy_cores", "proxy cores", "CPU cores the proxy used", "", "{:.2f}", False),
    Metric("gen_cores", "load cores", "CPU cores of load generator + backend", "", "{:.2f}", False),
]


# ---------- new connections ----------


def run_connrate(ctx: Ctx, proxy: Proxy) -> dict[str, Any]:
    s = ctx.settings
    before = read_shm(ctx.shm)
    res = run_loadgen(
        ctx,
        [
            "connrate",
            "--host", proxy.target_host(),
            "--port", str(proxy.target().echo),
            "--concurrency", str(s.conn_concurrency),
            "--size", str(s.conn_size),
            "--count", str(s.conn_max),
            "--duration", str(s.duration),
            "--warmup", str(s.warmup),
            *_pids_arg(proxy),
            *_gen_arg(ctx),
        ],
        timeout=s.duration + s.warmup + 30,
    )  # fmt: skip
    conns = res["conns"]
    if conns == 0:
        raise ScenarioError(f"no connection completed: {res}")
    cpu = _cpu(res)
    after = read_shm(ctx.shm)
    # connections each backend echo port accepted during the run (warm-up included): how the
    # pool spread them over its members; ports beyond the pool's members should stay at 0
    per_port = [after[f] - before[f] for f in ECHO_PORT_FIELDS[: max(proxy.pool_size, 1)]]
    out: dict[str, Any] = {
        "conn_s": conns / res["secs"],
        "p99_ms": res["p99_us"] / 1000.0,
        "cpu_us_per_conn": cpu * 1e6 / conns if cpu is not None else None,
        "errors": res["errors"],
        **_cores(res),
        "member_conns": per_port,
        "raw": res,
    }
    total = sum(per_port)
    if proxy.pool_size > 1 and total and min(per_port) < 0.8 * total / len(per_port):
        shares = "/".join(f"{100 * n / total:.0f}" for n in per_port)
        out["note"] = f"uneven pool: members got {shares}% of the connections"
    return out


CONN_METRICS = [
    Metric("conn_s", "conn/s", "connections per second", "higher"),
    Metric("p99_ms", "p99 ms", "p99 of connect+echo+close, ms", "lower", "{:.2f}"),
    Metric("cpu_us_per_conn", "CPU us/conn", "proxy CPU us per connection", "lower", "{:.1f}"),
    Metric("errors", "errors", "failed connection attempts", "lower", ratio=False),
    Metric("proxy_cores", "proxy cores", "CPU cores the proxy used", "", "{:.2f}", False),
    Metric("gen_cores", "load cores", "CPU cores of load generator + backend", "", "{:.2f}", False),
]


# ---------- 1-byte round trip ----------


def run_rtt(ctx: Ctx, proxy: Proxy) -> dict[str, Any]:
    s = ctx.settings
    res = run_loadgen(
        ctx,
        [
            "rtt",
            "--host", proxy.target_host(),
            "--port", str(proxy.target().echo),
            "--count", str(s.rtt_count),
            "--duration", str(s.rtt_duration),
            "--warmup", "0.2",
            *_pids_arg(proxy),
            *_gen_arg(ctx),
        ],
        timeout=s.rtt_duration + 30,
    )  # fmt: skip
    if res["errors"] or not res["count"]:
        raise ScenarioError(f"round trips failed: {res}")
    cpu = _cpu(res)
    return {
        "p50_us": res["p50_us"],
        "p99_us": res["p99_us"],
        "cpu_us_per_rt": cpu * 1e6 / res["count"] if cpu is not None else None,
        **_cores(res),
        "raw": res,
    }


RTT_METRICS = [
    Metric("p50_us", "p50 us", "p50 round trip, us", "lower", "{:.1f}"),
    Metric("p99_us", "p99 us", "p99 round trip, us", "lower", "{:.1f}"),
    Metric("cpu_us_per_rt", "CPU us/rt", "proxy CPU us per round trip", "lower", "{:.1f}"),
]


# ---------- UDP request/response ----------


def run_udp(ctx: Ctx, proxy: Proxy) -> dict[str, Any]:
    s = ctx.settings
    res = run_loadgen(
        ctx,
        [
            "udp",
            "--host", proxy.target_host(),
            "--port", str(proxy.target().udp),
            "--sockets", str(s.udp_sockets),
            "--size", str(s.udp_size),
            "--timeout-ms", str(s.udp_timeout_ms),
            "--duration", str(s.duration),
            "--warmup", str(s.warmup),
            *_pids_arg(proxy),
            *_gen_arg(ctx),
        ],
        timeout=s.duration + s.warmup + 30,
    )  # fmt: skip
    n = res["exchanges"]
    if n == 0:
        raise ScenarioError(f"no UDP exchange completed: {res}")
    cpu = _cpu(res)
    return {
        "dgram_s": n / res["secs"],
        "p99_us": res["p99_us"],
        "lost": res["lost"],
        "cpu_us_per_exchange": cpu * 1e6 / n if cpu is not None else None,
        **_cores(res),
        "raw": res,
    }


UDP_METRICS = [
    Metric("dgram_s", "exch/s", "exchanges (request + reply) per second", "higher"),
    Metric("p99_us", "p99 us", "p99 of one exchange, us", "lower"),
    Metric("lost", "lost", "requests without reply in 200 ms", "lower", ratio=False),
    Metric("cpu_us_per_exchange", "CPU us/exch", "proxy CPU us per exchange", "lower", "{:.1f}"),
    Metric("proxy_cores", "proxy cores", "CPU cores the proxy used", "", "{:.2f}", False),
    Metric("gen_cores", "load cores", "CPU cores of load generator + backend", "", "{:.2f}", False),
]


# ---------- idle connections: RSS ----------


def run_idle(ctx: Ctx, proxy: Proxy) -> dict[str, Any]:
    s = ctx.settings
    # connections of the readiness probe and of earlier runs must be gone from the backend
    procs.wait_until(lambda: read_shm(ctx.shm)["echo_open"] == 0, 5.0)
    before = procs.rss_kib(proxy.pids)
    proc = procs.spawn(
        ctx.client(
            "idle",
            "--host", proxy.target_host(),
            "--port", str(proxy.target().echo),
            "--count", str(s.idle_conns),
            "--shm", str(ctx.shm),
            "--timeout", str(s.idle_timeout),
            "--hold", "60",
        ),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        log=ctx.logs / "loadgen.log",
    )  # fmt: skip
    try:
        assert proc.stdout is not None and proc.stdin is not None
        line = _read_line(proc, timeout=s.idle_timeout + 15)
        res: dict[str, Any] = json.loads(line)
        after = procs.rss_kib(proxy.pids)
        proc.stdin.close()  # tells loadgen to close its connections and exit
        proc.wait(timeout=15)
    finally:
        procs.stop(proc, grace=2.0)
    held = res["backend_held"]
    if held <= 0:
        raise ScenarioError(f"the backend never saw the connections: {res}")
    out: dict[str, Any] = {
        "kib_per_conn": (after - before) / held,
        "rss_before_mib": before / 1024,
        "rss_after_mib": after / 1024,
        "held": held,
        "raw": res,
    }
    if held < s.idle_conns:
        out["note"] = f"only {held} of {s.idle_conns} connections reached the backend"
    return out


def _read_line(proc: subprocess.Popen[bytes], timeout: float) -> str:
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    buf = b""
    end = time.monotonic() + timeout
    try:
        while b"\n" not in buf:
            left = end - time.monotonic()
            if left <= 0:
                raise ScenarioError(f"loadgen idle gave no answer within {timeout:.0f}s")
            if not sel.select(left):
                continue
            chunk = proc.stdout.read1(4096)  # type: ignore[attr-defined]
            if not chunk:
                raise ScenarioError(f"loadgen idle exited ({proc.poll()}) without an answer")
            buf += chunk
    finally:
        sel.close()
    return buf.split(b"\n", 1)[0].decode()


IDLE_METRICS = [
    Metric(
        "kib_per_conn", "KiB/conn", "RSS growth per idle proxied connection, KiB", "lower", "{:.1f}"
    ),
    Metric("rss_before_mib", "RSS0 MiB", "RSS of the fresh proxy, MiB", "lower", "{:.1f}"),
    Metric("rss_after_mib", "RSS1 MiB", "RSS holding the connections, MiB", "lower", "{:.1f}"),
    Metric("held", "held", "connections that reached the backend", "higher", ratio=False),
]


SCENARIOS: dict[str, Scenario] = {
    sc.name: sc
    for sc in (
        Scenario("bulk1", "TCP bulk, 1 stream, both directions at once", _bulk(1), BULK_METRICS),
        Scenario("bulk8", "TCP bulk, 8 streams, both directions at once", _bulk(8), BULK_METRICS),
        Scenario("rtt", "1-byte round trip, one persistent TCP connection", run_rtt, RTT_METRICS),
        Scenario(
            "udp",
            "UDP request/response, 64 sockets, 200 bytes, one in flight each",
            run_udp,
            UDP_METRICS,
            udp=True,
        ),
        Scenario(
            "idle",
            "RSS of the proxy holding idle proxied TCP connections (5,000 by default)",
            run_idle,
            IDLE_METRICS,
            needs_process=True,
        ),
        Scenario(
            "connrate",
            "new TCP connections: 32 concurrent, connect, 64-byte echo, close",
            run_connrate,
            CONN_METRICS,
        ),
    )
}
