"""`make bench`: interleaved rounds of every scenario against every proxy on loopback.

Order: for each round, for each scenario, every proxy once (the proxy order rotates from
round to round so no proxy always runs right after the same neighbour). Each proxy process is
started fresh for each (round, scenario) and stopped right after it. One C backend (TCP bulk
source/sink, TCP echo, UDP echo) serves the whole run. Only loopback is ever targeted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import struct
import subprocess
import sys
import time
import traceback
from pathlib import Path
from types import FrameType
from typing import Any

from bench import procs, targets
from bench.build import OUT, build_loadgen
from bench.netns import HOST_ADDRESS, Topology
from bench.proxies import (
    ALL,
    DEFAULT,
    HOST,
    POOL_PORTS,
    TLS_SCENARIOS,
    Ports,
    Proxy,
    ProxyStartError,
)
from bench.report import render, summarize
from bench.scenarios import SCENARIOS, SHM_FMT, Ctx, Scenario, ScenarioError, Settings, read_shm
from bench.sni_proxies import SNI_DEFAULT, SNI_PROXIES, start_tls_backend
from bench.sni_scenarios import SNI_SCENARIOS

SCENARIOS = {**SCENARIOS, **SNI_SCENARIOS}
ALL = {**ALL, **SNI_PROXIES}
DEFAULT = [*DEFAULT, *SNI_DEFAULT]

REFS = ["haproxy-256k", "haproxy", "nginx"]
NETNS_BACKEND = Ports(5001, 5002, 5003, (5004, 5005))  # in the backend's own container
MAX_START_FAILURES = 2  # in a row: then the proxy's remaining measurements are skipped
# Loopback connections go through netfilter's conntrack here (Docker loads it); closed TCP
# connections stay in its table for 120 s and a full table drops new connections and
# datagrams. Before each measurement, wait (bounded) until the table is at most this full.
CONNTRACK_LIMIT = 0.75
CONNTRACK_WAIT_S = 60.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Loopback benchmark of godoxy-streams against HAProxy, nginx and no proxy.",
    )
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    p.add_argument("--quick", action="store_true", help="smoke run: 1 round, short windows")
    p.add_argument("--only", default="", help=f"comma-separated scenarios ({','.join(SCENARIOS)})")
    p.add_argument(
        "--proxies",
        default=",".join(DEFAULT),
        help=(
            f"comma-separated proxies (default {','.join(DEFAULT)}; "
            "ours-pool3 runs in connrate only, ours-agent in bulk1, bulk8, rtt, connrate, udp; "
            "the *-sni proxies in sniconn, snibulk, sniterm only; "
            "also: nginx-256k, ours-guarded, pyref, pyref-sni (sniterm))"
        ),
    )
    p.add_argument("--subject", default="ours", help="proxy whose ratios are printed (ours)")
    p.add_argument("--duration", type=float, default=None, help="measured window, s (3)")
    p.add_argument("--idle-conns", type=int, default=5000, help="idle connections (5000)")
    p.add_argument("--json", default=str(OUT / "results.json"), help="raw rows (JSON)")
    p.add_argument(
        "--max-minutes",
        type=float,
        default=25.0,
        help="stop starting new measurements after this long (default 25)",
    )
    p.add_argument("--rebuild", action="store_true", help="recompile the load generator")
    p.add_argument(
        "--netns",
        action="store_true",
        help="clients in a network namespace, the backend in a container (implied by "
        "ours-kernel; needs root and Docker): every proxy reached as from another host",
    )
    p.add_argument(
        "--time-to-route",
        choices=("auto", "on", "off"),
        default="auto",
        help="also measure how fast listeners follow containers (auto: when Docker answers)",
    )
    args = p.parse_args(argv)
    if args.quick:
        args.rounds = 1
    if args.rounds < 1 or args.rounds > 50:
        p.error("--rounds must be 1..50")
    if args.idle_conns < 1 or args.idle_conns > 9000:
        p.error("--idle-conns must be 1..9000 (the fd hard limit is shared by 3 processes)")
    if args.duration is not None and not 0.2 <= args.duration <= 30:
        p.error("--duration must be 0.2..30 s")
    return args


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _version(argv: list[str]) -> str:
    if not shutil.which(argv[0]) and not Path(argv[0]).exists():
        return "not installed"
    try:
        res = subprocess.run(argv, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    text = (res.stdout + res.stderr).strip().splitlines()
    return text[0] if text else "?"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    scenario_names = [s for s in args.only.split(",") if s] or list(SCENARIOS)
    unknown = [s for s in scenario_names if s not in SCENARIOS]
    if unknown:
        print(f"bench: unknown scenario(s) {unknown}; known: {list(SCENARIOS)}", file=sys.stderr)
        return 2
    proxy_names = [p for p in args.proxies.split(",") if p]
    unknown = [p for p in proxy_names if p not in ALL]
    if unknown:
        print(f"bench: unknown proxies {unknown}; known: {list(ALL)}", file=sys.stderr)
        return 2
    scenarios = [SCENARIOS[s] for s in scenario_names]
    netns = args.netns or any(ALL[name].needs_netns for name in proxy_names)
    if netns and TLS_SCENARIOS & set(scenario_names):
        tls = ",".join(sorted(TLS_SCENARIOS & set(scenario_names)))
        print(f"bench: {tls} run on loopback only: left out of this --netns run")
        scenarios = [sc for sc in scenarios if sc.name not in TLS_SCENARIOS]
        scenario_names = [sc.name for sc in scenarios]

    settings = Settings(idle_conns=args.idle_conns)
    if args.quick:
        settings.duration, settings.warmup = 1.5, 0.3
        settings.rtt_count, settings.rtt_duration = 5000, 1.0
    if args.duration is not None:
        settings.duration = args.duration
        settings.rtt_duration = min(settings.rtt_duration, args.duration)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # SIGINT: even if inherited ignored
        signal.signal(sig, _terminate)
    nofile = procs.raise_nofile()
    loadgen = build_loadgen(force=args.rebuild)
    logs = OUT / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    for old in logs.glob("*.log"):
        old.unlink()
    shm = OUT / "backend.shm"

    started = time.time()
    rows: list[dict[str, Any]] = []
    skipped: dict[str, str] = {}
    backend: Backend | None = None
    topology: Topology | None = None
    tls_backend: subprocess.Popen[bytes] | None = None
    interrupted = crashed = False
    try:
        if netns:
            topology = Topology().open()
            shm = OUT / "shm" / "backend.shm"
        host = HOST_ADDRESS if topology else HOST
        ports = procs.free_ports(3 * (len(proxy_names) + 1) + POOL_PORTS, host)
        backend_ports = (
            NETNS_BACKEND
            if topology
            else Ports(ports[0], ports[1], ports[2], tuple(ports[len(ports) - POOL_PORTS :]))
        )
        backend = Backend(logs, shm, backend_ports, topology)
        backend.start(build_loadgen(static=True) if topology else loadgen)
        if TLS_SCENARIOS & set(scenario_names) and any(ALL[n].tls for n in proxy_names):
            tls_backend, tls_echo, tls_source = start_tls_backend(
                loadgen, OUT / "conf" / "sni-certs", logs
            )
            backend_ports = Ports(
                backend_ports.bulk,
                backend_ports.echo,
                backend_ports.udp,
                backend_ports.more_echo,
                tls_echo=tls_echo,
                tls_source=tls_source,
            )

        proxies: list[Proxy] = []
        for i, name in enumerate(proxy_names):
            listen = Ports(ports[3 * i + 3], ports[3 * i + 4], ports[3 * i + 5])
            proxy = ALL[name](listen, backend_ports, OUT)
            if topology is not None:
                proxy.place(topology)
            why = proxy.unavailable()
            if why:
                skipped[name] = why
                print(f"bench: skipping {name}: {why}")
            else:
                proxies.append(proxy)

        print(
            f"bench: {args.rounds} round(s) x {len(scenarios)} scenario(s) x "
            f"{len(proxies)} proxies ({', '.join(p.name for p in proxies)}); window "
            f"{settings.duration:g}s + {settings.warmup:g}s warm-up; "
            f"proxies restarted per round and scenario; RLIMIT_NOFILE {nofile}"
        )
        deadline = started + args.max_minutes * 60
        ctx = Ctx(loadgen=loadgen, shm=shm, logs=logs, settings=settings, backend_pid=backend.pid)
        ctx.tls_backend_pid = tls_backend.pid if tls_backend is not None else 0
        if topology is not None:
            ctx.prefix, ctx.client_args = topology.prefix(), topology.client_args()
        start_failures: dict[str, int] = {}
        for rnd in range(1, args.rounds + 1):
            shift = (rnd - 1) % max(len(proxies), 1)
            order = proxies[shift:] + proxies[:shift]
            for sc in scenarios:
                for proxy in order:
                    if not proxy.measures(sc.name):
                        continue  # a variant measured elsewhere only: no row at all
                    if time.time() > deadline:
                        raise TimeoutError(f"--max-minutes {args.max_minutes:g} reached")
                    if not backend.alive():
                        raise RuntimeError(f"the backend died; see {logs / 'backend.log'}")
                    if start_failures.get(proxy.name, 0) >= MAX_START_FAILURES:
                        rows.append(_skip_row(rnd, sc, proxy, "did not start; given up"))
                        continue
                    row = run_one(ctx, sc, proxy, rnd, args.rounds)
                    rows.append(row)
                    if row["error"].startswith("ProxyStartError"):
                        start_failures[proxy.name] = start_failures.get(proxy.name, 0) + 1
                    elif row["status"] == "ok":
                        start_failures[proxy.name] = 0
                    time.sleep(0.2)
    except KeyboardInterrupt as exc:
        interrupted = True
        print(f"\nbench: interrupted ({exc or 'Ctrl-C'}); stopping everything", file=sys.stderr)
    except TimeoutError as exc:
        print(f"bench: {exc}; reporting what was measured", file=sys.stderr)
    except Exception:
        crashed = True
        traceback.print_exc()
        print("bench: crashed; reporting what was measured", file=sys.stderr)
    finally:
        if backend is not None:
            backend.stop()
        if tls_backend is not None:
            procs.stop(tls_backend)
        procs.stop_all()
        if topology is not None:
            topology.close()

    summary = summarize(rows, scenarios)
    shown = [p for p in proxy_names if p not in skipped]
    # (variant, baseline) pairs, both shown: a "variant/baseline" ratio row each
    variants = [(name, base) for name in shown for base in ALL[name].baselines if base in shown]
    table = render(summary, rows, scenarios, shown, args.subject, REFS, args.rounds, variants)
    meta = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "elapsed_s": round(time.time() - started, 1),
        "rounds": args.rounds,
        "quick": args.quick,
        "settings": settings.__dict__,
        "proxies": shown,
        "skipped": skipped,
        "subject": args.subject,
        "variants": [list(pair) for pair in variants],
        "interrupted": interrupted,
        "crashed": crashed,
        "machine": {
            "cpus": os.cpu_count(),
            "kernel": platform.release(),
            "python": platform.python_version(),
        },
        "versions": {
            "haproxy": _version(["haproxy", "-v"]),
            "nginx": _version(["nginx", "-v"]),
            "ours": _version([str(Path(sys.executable).parent / "godoxy-streams"), "--version"]),
        },
        "notes": [
            "medians over rounds with [min-max]; each proxy restarted per round and scenario",
            "CPU = utime+stime of the proxy's process tree over the measured window",
            "direct = client to backend with no proxy: the loopback headroom",
            "ours-pool3 = ours with the echo route as a 3-member round-robin pool (connrate)",
            "ours-agent = ours with its routes through the agent (TCP: mutual TLS, UDP: QUIC); "
            "CPU and RSS of daemon + agent summed",
            "*-sni = SNI passthrough of two names on one socket and TLS termination "
            "(bench/sni_proxies.py); every connection a full handshake",
        ],
    }
    print("\n" + "=" * 100)
    print(
        f"godoxy-streams bench: {args.rounds} round(s), {meta['elapsed_s']}s, "
        f"{os.cpu_count()} CPUs shared by load generator, backend and proxy (noisy)"
    )
    print(f"versions: haproxy: {meta['versions']['haproxy']}; nginx: {meta['versions']['nginx']}")
    for name, why in skipped.items():
        print(f"skipped: {name}: {why}")
    print(table)
    print(targets.render(rows))
    out_path = Path(args.json)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps({"meta": meta, "rows": rows, "summary": summary}, indent=1))
    print(f"\nraw rows: {out_path}")
    if not interrupted and args.time_to_route != "off":
        _time_to_route(required=args.time_to_route == "on", quick=args.quick)
    if interrupted:
        return 130
    if crashed:
        return 1
    errors = [r for r in rows if r["status"] == "error"]
    return 1 if errors and len(errors) == len(rows) else 0


class Backend:
    """The C backend: a child process on loopback, or (``topology``) a container."""

    def __init__(self, logs: Path, shm: Path, ports: Ports, topology: Topology | None) -> None:
        self.logs, self.shm, self.ports, self.topology = logs, shm, ports, topology
        self.proc: subprocess.Popen[bytes] | None = None
        self.pid = 0

    def start(self, loadgen: Path) -> None:
        self.shm.unlink(missing_ok=True)
        args = [
            "--bulk-port", str(self.ports.bulk),
            "--echo-port", str(self.ports.echo),
            "--udp-port", str(self.ports.udp),
            "--more-echo-ports", ",".join(map(str, self.ports.more_echo)),
        ]  # fmt: skip
        if self.topology is not None:
            self.topology.start_backend(
                loadgen, [*args, "--shm", "/shm/backend.shm"], self.shm.parent
            )
            host, self.pid = self.topology.backend_address, self.topology.backend_pid
        else:
            argv = [str(loadgen), "backend", "--host", HOST, *args, "--shm", str(self.shm)]
            self.proc = procs.spawn(argv, log=self.logs / "backend.log")
            host, self.pid = HOST, self.proc.pid
        shm = self.shm
        if not procs.wait_until(
            lambda: (
                shm.exists()
                and shm.stat().st_size >= struct.calcsize(SHM_FMT)
                and read_shm(shm)["magic"] != 0
                and procs.tcp_accepts(host, self.ports.echo)
            ),
            10.0,
        ):
            raise RuntimeError(f"the backend did not start; see {self.logs / 'backend.log'}")

    def alive(self) -> bool:
        if self.topology is not None:
            return self.topology.backend_alive()
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is not None:
            procs.stop(self.proc)  # a container goes with the topology


def _skip_row(rnd: int, sc: Scenario, proxy: Proxy, why: str) -> dict[str, Any]:
    row = _new_row(rnd, sc, proxy)
    row["status"], row["error"] = "skipped", why
    return row


def _new_row(rnd: int, sc: Scenario, proxy: Proxy) -> dict[str, Any]:
    return {
        "round": rnd,
        "scenario": sc.name,
        "proxy": proxy.name,
        "status": "ok",
        "metrics": {},
        "error": "",
        "t": round(time.time(), 3),
    }


def run_one(ctx: Ctx, sc: Scenario, proxy: Proxy, rnd: int, rounds: int) -> dict[str, Any]:
    row = _new_row(rnd, sc, proxy)
    tag = f"[{rnd}/{rounds}] {sc.name:<8} {proxy.name:<13}"
    why = sc.applies_to(proxy)
    if why:
        row["status"], row["error"] = "skipped", why
        return row
    conntrack_note = _conntrack_headroom(tag, row)
    t0 = time.monotonic()
    try:
        proxy.start()
        try:
            metrics = sc.run(ctx, proxy)
        finally:
            proxy.stop()
    except (ProxyStartError, ScenarioError, OSError, ValueError, KeyError) as exc:
        row["status"], row["error"] = "error", f"{type(exc).__name__}: {exc}"
        print(f"{tag} ERROR {row['error'].splitlines()[0][:200]}", flush=True)
        return row
    row["raw"] = metrics.pop("raw", {})
    if conntrack_note:
        metrics["note"] = "; ".join(filter(None, [metrics.get("note"), conntrack_note]))
    row["metrics"] = metrics
    shown = []
    for m in sc.metrics:
        val = metrics.get(m.key)
        if val is not None and m.ratio:
            shown.append(f"{m.short}={m.fmt.format(val)}")
    note = f"  ({metrics['note']})" if metrics.get("note") else ""
    took = time.monotonic() - t0
    print(f"{tag} {'  '.join(shown)}  [{took:.1f}s]{note}", flush=True)
    return row


def _conntrack_headroom(tag: str, row: dict[str, Any]) -> str:
    """Wait until conntrack has room; return a note when it still had none."""
    usage = procs.conntrack_usage()
    if usage is None:
        return ""
    row["conntrack"] = list(usage)
    if usage[0] <= CONNTRACK_LIMIT * usage[1]:
        return ""
    print(f"{tag} waiting for conntrack to drain ({usage[0]}/{usage[1]} entries)", flush=True)
    t0 = time.monotonic()

    def roomy() -> bool:
        now = procs.conntrack_usage()
        return now is None or now[0] <= CONNTRACK_LIMIT * now[1]

    ok = procs.wait_until(roomy, CONNTRACK_WAIT_S, interval=1.0)
    row["conntrack_wait_s"] = round(time.monotonic() - t0, 1)
    if ok:
        return ""
    now = procs.conntrack_usage() or usage
    return f"conntrack table {100 * now[0] // max(now[1], 1)}% full"


def _time_to_route(*, required: bool, quick: bool) -> None:
    """The engine-event-to-listener figures (bench/time_to_route.py), when Docker answers."""
    import docker

    try:
        docker.from_env().close()
    except docker.errors.DockerException as exc:
        if required:
            raise
        print(f"\nbench: time-to-route skipped: no Docker engine answers ({exc})")
        return
    from bench import time_to_route

    print("\n" + "=" * 100)
    time_to_route.main(["--containers", "10", "--initial", "20"] if quick else [])
