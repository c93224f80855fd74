"""The SNI scenarios: new TLS connections and bulk through SNI passthrough, and TLS
termination, each driven by loadgen's TLS modes against the ``*-sni`` proxies.

- ``sniconn``: 8 client threads, each in a loop: connect, full TLS handshake with the TLS
  backend through the proxy (server name ``echo.bench.test``), a 64-byte echo, close.
- ``snibulk``: 1 TLS stream reading what the TLS backend's source sends through the proxy
  (``bulk.bench.test``): MB/s backend to client and proxy CPU per GB.
- ``sniterm``: as ``sniconn``, but the proxy completes the handshake itself
  (``term.bench.test``) and relays plaintext to the C backend's echo port: proxy CPU per
  handshake.

"load cores" adds the TLS backend's CPU to the client's and the plain backend's. Every
connection must negotiate TLS 1.3 (the clients report the version), so no proxy is measured
at a cheaper or dearer handshake than the others.
"""

from __future__ import annotations

from typing import Any

from bench.proxies import HOST, Proxy
from bench.scenarios import (
    BULK_METRICS,
    Ctx,
    Metric,
    Scenario,
    ScenarioError,
    _cores,
    _cpu,
    _pids_arg,
    run_loadgen,
)

TLS_THREADS = 8
TLS_VERSION = "TLSv1.3"


def _same_protocol(res: dict[str, Any]) -> None:
    """Every proxy is measured at TLS 1.3: a handshake at another version costs other work."""
    if res.get("tls_version") != TLS_VERSION:
        raise ScenarioError(f"the clients negotiated {res.get('tls_version')}, not {TLS_VERSION}")


def _gen(ctx: Ctx) -> list[str]:
    pids = [str(p) for p in (ctx.backend_pid, ctx.tls_backend_pid) if p]
    return ["--gen-pids", ",".join(pids)] if pids else []


def _tlsconn(ctx: Ctx, proxy: Proxy, port: int, sni: str) -> dict[str, Any]:
    s = ctx.settings
    res = run_loadgen(
        ctx,
        [
            "tlsconn",
            "--host", HOST,
            "--port", str(port),
            "--sni", sni,
            "--concurrency", str(TLS_THREADS),
            "--size", str(s.conn_size),
            "--count", str(s.conn_max),
            "--duration", str(s.duration),
            "--warmup", str(s.warmup),
            *_pids_arg(proxy),
            *_gen(ctx),
        ],
        timeout=s.duration + s.warmup + 30,
    )  # fmt: skip
    conns = res["conns"]
    if conns == 0:
        raise ScenarioError(f"no TLS connection completed: {res}")
    _same_protocol(res)
    cpu = _cpu(res)
    return {
        "conn_s": conns / res["secs"],
        "p99_ms": res["p99_us"] / 1000.0,
        "cpu_us_per_conn": cpu * 1e6 / conns if cpu is not None else None,
        "errors": res["errors"],
        **_cores(res),
        "raw": res,
    }


def run_sniconn(ctx: Ctx, proxy: Proxy) -> dict[str, Any]:
    return _tlsconn(ctx, proxy, proxy.target().echo, "echo.bench.test")


def run_sniterm(ctx: Ctx, proxy: Proxy) -> dict[str, Any]:
    return _tlsconn(ctx, proxy, proxy.target().bulk, "term.bench.test")


def run_snibulk(ctx: Ctx, proxy: Proxy) -> dict[str, Any]:
    s = ctx.settings
    res = run_loadgen(
        ctx,
        [
            "tlsbulk",
            "--host", HOST,
            "--port", str(proxy.target().echo),
            "--sni", "bulk.bench.test",
            "--streams", "1",
            "--duration", str(s.duration),
            "--warmup", str(s.warmup),
            *_pids_arg(proxy),
            *_gen(ctx),
        ],
        timeout=s.duration + s.warmup + 30,
    )  # fmt: skip
    if res["errors"]:
        raise ScenarioError(f"the TLS stream broke: {res}")
    _same_protocol(res)
    total, secs, cpu = res["down_bytes"], res["secs"], _cpu(res)
    return {
        "mb_s": total / secs / 1e6,
        "cpu_s_per_gb": cpu / (total / 1e9) if cpu is not None and total else None,
        **_cores(res),
        "raw": res,
    }


TLS_CONN_METRICS = [
    Metric("conn_s", "conn/s", "TLS connections per second", "higher"),
    Metric("p99_ms", "p99 ms", "p99 of connect+handshake+echo+close, ms", "lower", "{:.2f}"),
    Metric("cpu_us_per_conn", "CPU us/conn", "proxy CPU us per connection", "lower", "{:.1f}"),
    Metric("errors", "errors", "failed connections or handshakes", "lower", ratio=False),
    Metric("proxy_cores", "proxy cores", "CPU cores the proxy used", "", "{:.2f}", False),
    Metric("gen_cores", "load cores", "CPU cores of clients + backends", "", "{:.2f}", False),
]
TLS_BULK_METRICS = [
    Metric("mb_s", "MB/s", "MB/s upstream to client (TLS records, passed through)", "higher"),
    *(m for m in BULK_METRICS if m.key in ("cpu_s_per_gb", "proxy_cores", "gen_cores")),
]

SNI_SCENARIOS: dict[str, Scenario] = {
    sc.name: sc
    for sc in (
        Scenario(
            "sniconn",
            f"new TLS connections through SNI passthrough: {TLS_THREADS} threads, full "
            "handshake with the upstream, 64-byte echo, close",
            run_sniconn,
            TLS_CONN_METRICS,
        ),
        Scenario(
            "snibulk",
            "TLS bulk through SNI passthrough, 1 stream, upstream to client",
            run_snibulk,
            TLS_BULK_METRICS,
        ),
        Scenario(
            "sniterm",
            f"TLS termination by the proxy: {TLS_THREADS} threads, full handshake, 64-byte "
            "echo from a plaintext upstream, close",
            run_sniterm,
            TLS_CONN_METRICS,
        ),
    )
}
