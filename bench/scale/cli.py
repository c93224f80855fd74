"""`python -m bench.scale`: the scale benchmark's command line and its two runs.

The simulated run (``--sim``) re-executes this program in a network namespace of its own
(``unshare --net``, root) where 198.18.0.0/15, the fake containers' range, is local: nothing
the daemon dials there can leave the machine. The real run (``--real``) uses the local Docker
engine from the host's namespace. Both are bounded in time per size; results go to
``bench/out/scale.json`` and are printed as markdown tables.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

from bench import procs
from bench.build import OUT
from bench.scale import sim, tables
from bench.scale.daemon import nofile_for_children, py_spy_path
from bench.scale.measure import loadavg

WORKDIR = OUT / "scale"
HOST_NETNS = "BENCH_SCALE_HOST_NETNS"  # the parent's network namespace, for the child to compare
EXAMPLES = """\
examples:
  python -m bench.scale                          sim 100 to 10,000 and real 30/300/1,000
  python -m bench.scale --quick                  smoke run: sim 1,000 and real 30, few events
  python -m bench.scale --real '' --rounds 3     only the simulated engine, three rounds
  python -m bench.scale --sim 5000 --real '' --profile 5000 --py-spy /tmp/venv/bin/py-spy
  python -m bench.scale --tables bench/out/a.json bench/out/b.json   merge earlier runs

The daemon's soft RLIMIT_NOFILE is raised to the hard limit by this program (the daemon
inherits it); the figure is printed. Needs root for the simulated run (a network namespace).
"""


def _sizes(text: str) -> list[int]:
    return [int(s.replace("_", "")) for s in text.split(",") if s.strip() not in ("", "none")]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.scale",
        description="How the daemon's CPU, memory and latency grow with the number of "
        "containers: a simulated engine (no containers) and the real local engine.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--sim", default="100,1000,5000,10000", metavar="SIZES",
        help="simulated sizes, comma-separated ('' for none; default 100,1000,5000,10000)",
    )  # fmt: skip
    p.add_argument(
        "--real", default="30,300,1000", metavar="SIZES",
        help="real-engine sizes ('' for none; default 30,300,1000)",
    )  # fmt: skip
    p.add_argument("--rounds", type=int, default=1, metavar="R", help="repeat every size (1)")
    p.add_argument(
        "--events", type=int, default=50, metavar="E", help="sim: events of each kind (50)"
    )
    p.add_argument("--burst", type=int, default=500, metavar="B", help="sim: burst size (500)")
    p.add_argument("--real-events", type=int, default=10, metavar="E", help="real: events (10)")
    p.add_argument("--workers", type=int, default=8, metavar="W", help="real: parallel starts (8)")
    p.add_argument(
        "--budget-min", type=float, default=10, metavar="M", help="minutes per sim size (10)"
    )
    p.add_argument(
        "--real-budget-min", type=float, default=15, metavar="M", help="minutes per real size (15)"
    )
    p.add_argument(
        "--keep-going", action="store_true", help="run larger sizes after one went over budget"
    )
    p.add_argument(
        "--no-status-api", action="store_true", help="sim: skip the /metrics, /api/routes timings"
    )
    p.add_argument("--profile", type=int, default=0, metavar="N", help="py-spy the sim size N")
    p.add_argument("--py-spy", default=None, metavar="PATH", help="py-spy binary (PATH's)")
    p.add_argument("--quick", action="store_true", help="smoke run: sim 1000, real 30, 10 events")
    p.add_argument("--json", default=str(OUT / "scale.json"), metavar="PATH", help="results file")
    p.add_argument(
        "--tables", nargs="+", metavar="JSON", help="print the tables of earlier results, merged"
    )
    p.add_argument("--sim-child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.sim, args.real = ("1000" if args.sim else ""), ("30" if args.real else "")
        args.events, args.burst, args.real_events = 10, 100, 5
    if not 1 <= args.rounds <= 20:
        p.error("--rounds must be 1..20")
    if any(n < 1 or n > 12_000 for n in _sizes(args.sim)):
        p.error("--sim sizes must be 1..12000 (listen ports 20000..32767)")
    return args


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _progress(kind: str, row: dict[str, Any]) -> None:
    keys = ("sync_s", "sync_cpu_s", "follow_cpu_s", "rss_per_route_kib", "burst_start_s")
    shown = [f"{k}={row[k]:.3g}" for k in keys if isinstance(row.get(k), float)]
    for key in ("unrelated", "start", "next_after_return"):
        if row.get(key):
            shown.append(f"{key} mean={row[key]['mean']:.3g} p50={row[key]['p50']:.3g}")
    load = "/".join(f"{x[0]:.1f}" for x in row["load"])
    print(f"bench.scale: {kind} N={row['n']}: {row['status']}; {'; '.join(shown)}; load {load}")


def _run_sizes(
    kind: str, sizes: list[int], rounds: int, keep_going: bool, one: Any
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for rnd in range(1, rounds + 1):
        for n in sizes:
            if not keep_going and any(r["n"] < n and r["status"] != "ok" for r in rows):
                rows.append({"n": n, "round": rnd, "status": "skipped: a smaller size failed"})
                continue
            row = one(n)
            row["round"] = rnd
            _progress(kind, row)
            rows.append(row)
    return rows


def sim_child(args: argparse.Namespace) -> int:
    """Inside the private network namespace: lo up, the fake range local, then the sizes."""
    if os.readlink("/proc/self/ns/net") == os.environ.get(HOST_NETNS, ""):
        print("bench.scale: refusing: not in a network namespace of its own", file=sys.stderr)
        return 2
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    subprocess.run(["ip", "addr", "add", "198.18.0.1/15", "dev", "lo"], check=True)
    opts = sim.SimOptions(
        WORKDIR, events=args.events, burst=args.burst, budget_s=args.budget_min * 60,
        status_api=not args.no_status_api,
    )  # fmt: skip
    bases: list[dict[str, Any]] = []

    def one(n: int) -> dict[str, Any]:
        if not bases or n == _sizes(args.sim)[0]:
            bases.append(sim.baseline(opts))
        opts.py_spy = py_spy_path(args.py_spy) if n == args.profile else None
        row = sim.run_size(n, opts, bases[-1])
        row["baseline"] = bases[-1]
        return row

    rows = _run_sizes("sim", _sizes(args.sim), args.rounds, args.keep_going, one)
    Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


def run_sim(args: argparse.Namespace) -> list[dict[str, Any]]:
    unshare = shutil.which("unshare")
    if os.geteuid() != 0 or unshare is None:
        print("bench.scale: simulated run skipped: needs root and unshare (a network namespace)")
        return []
    out = WORKDIR / "sim.json"
    out.unlink(missing_ok=True)
    argv = [unshare, "--net", "--", sys.executable, "-m", "bench.scale", "--sim-child"]
    argv += ["--sim", args.sim, "--rounds", str(args.rounds), "--events", str(args.events)]
    argv += ["--burst", str(args.burst), "--budget-min", str(args.budget_min)]
    argv += ["--profile", str(args.profile), "--json", str(out)]
    argv += ["--keep-going"] * args.keep_going + ["--no-status-api"] * args.no_status_api
    argv += ["--py-spy", args.py_spy] if args.py_spy else []
    limit = args.rounds * (len(_sizes(args.sim)) * args.budget_min + 2) * 60 + 300
    try:
        env = {**os.environ, HOST_NETNS: os.readlink("/proc/self/ns/net")}
        subprocess.run(argv, timeout=limit, check=False, env=env)
    except subprocess.TimeoutExpired:
        print(f"bench.scale: the simulated run exceeded {limit / 60:.0f} min; stopped")
    if not out.exists():
        print("bench.scale: the simulated run left no results (see above)")
        return []
    rows: list[dict[str, Any]] = json.loads(out.read_text())
    return rows


def run_real(args: argparse.Namespace) -> list[dict[str, Any]]:
    import docker

    from bench.scale import real
    from tests.docker.kit import ensure_image, sweep

    try:
        client = docker.from_env(max_pool_size=args.workers + 4, timeout=120)
        client.ping()
    except docker.errors.DockerException as exc:
        print(f"bench.scale: real run skipped: no Docker engine answers ({exc})")
        return []
    try:
        swept = sweep(client)
        if swept:
            print(f"bench.scale: removed {len(swept)} abandoned kit object(s) first")
        opts = real.RealOptions(
            WORKDIR, ensure_image(client), unrelated=args.real_events,
            next_routes=args.real_events, workers=args.workers,
            budget_s=args.real_budget_min * 60,
        )  # fmt: skip
        return _run_sizes(
            "real", _sizes(args.real), args.rounds, args.keep_going,
            lambda n: real.run_size(client, n, opts),
        )  # fmt: skip
    finally:
        client.close()


def print_tables(sim_rows: list[dict[str, Any]], real_rows: list[dict[str, Any]]) -> None:
    if sim_rows:
        print(tables.render("Simulated engine: sync and memory", sim_rows, tables.SIM_SYNC))
        print(tables.render("Simulated engine: events", sim_rows, tables.SIM_EVENTS))
        print(tables.notes(sim_rows))
    if real_rows:
        print(tables.render("Real engine", real_rows, tables.REAL))
        print(tables.notes(real_rows))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.tables:
        docs = [json.loads(Path(path).read_text()) for path in args.tables]
        print_tables([r for d in docs for r in d["sim"]], [r for d in docs for r in d["real"]])
        return 0
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _terminate)
    WORKDIR.mkdir(parents=True, exist_ok=True)
    soft, hard = nofile_for_children()
    if args.sim_child:
        try:
            return sim_child(args)
        finally:
            procs.stop_all()
    started = time.time()
    print(
        f"bench.scale: RLIMIT_NOFILE soft limit raised to {soft} (hard {hard}) for the daemon; "
        f"{os.cpu_count()} CPUs, load {'/'.join(f'{x:.2f}' for x in loadavg())}"
    )
    result: dict[str, Any] = {"sim": [], "real": []}
    interrupted = False
    try:
        if _sizes(args.sim):
            result["sim"] = run_sim(args)
        if _sizes(args.real):
            result["real"] = run_real(args)
    except KeyboardInterrupt as exc:
        interrupted = True
        print(f"\nbench.scale: interrupted ({exc}); stopping", file=sys.stderr)
    finally:
        procs.stop_all()
    result["meta"] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "elapsed_s": round(time.time() - started, 1),
        "args": vars(args),
        "nofile": [soft, hard],
        "machine": {"cpus": os.cpu_count(), "kernel": platform.release()},
    }
    print("\n" + "=" * 100)
    print(f"godoxy-streams scale benchmark ({result['meta']['elapsed_s']} s)\n")
    print_tables(result["sim"], result["real"])
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=1))
    print(f"raw results: {args.json}")
    return 130 if interrupted else 0
