"""Instructions per terminated TLS connection, counted, not timed: each proxy runs under
valgrind's callgrind while a Python client makes N connections (full TLS 1.3 handshake with
the proxy, 64 bytes echoed by a plaintext upstream, close), and again with none; the
difference over N is the proxy's user-space work per connection, split by shared object
(OpenSSL, libc, the interpreter, the proxy). Timed CPU on a shared machine moves with its
neighbours; this count does not (kernel work is not in it).

    python -m bench.instructions [--connections 200] [--proxies ours,nginx,haproxy]

Needs valgrind, nginx with its stream module and haproxy (``make bench-deps``). Loopback
only; every process it starts is stopped before it returns.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.sni_proxies import Certs  # noqa: E402
from tests.echo_server import echo_server  # noqa: E402
from tests.helpers import free_port  # noqa: E402

NAME = "term.bench.test"
PAYLOAD = b"x" * 64
START_TIMEOUT = 120.0  # valgrind starts slowly
Launch = Callable[[Path, Certs, int, int], list[str]]


def ours(folder: Path, certs: Certs, port: int, upstream: int) -> list[str]:
    routes = folder / "routes.yml"
    routes.write_text(
        "routes:\n  term: {scheme: tcp4, bind: 127.0.0.1, "
        f"port: '{port}:{upstream}', sni: {NAME}, tls_termination: true}}\n"
    )
    godoxy = Path(sys.executable).parent / "godoxy-streams"
    return [
        sys.executable, str(godoxy), "run", "--no-docker", "--routes", str(routes),
        "--api", "127.0.0.1:0", "--log-level", "WARNING",
        "--certificates-dir", str(certs.directory),
    ]  # fmt: skip


def nginx(folder: Path, certs: Certs, port: int, upstream: int) -> list[str]:
    conf = folder / "nginx.conf"
    conf.write_text(
        "daemon off; master_process off; worker_processes 1;\n"
        f"error_log {folder}/nginx.err; pid {folder}/nginx.pid;\n"
        "load_module /usr/lib/nginx/modules/ngx_stream_module.so;\n"
        "events {}\n"
        f"stream {{ server {{ listen 127.0.0.1:{port} ssl; ssl_certificate {certs.cert};\n"
        f"  ssl_certificate_key {certs.key}; ssl_protocols TLSv1.2 TLSv1.3;\n"
        f"  proxy_pass 127.0.0.1:{upstream}; }} }}\n"
    )
    return ["nginx", "-c", str(conf)]


def haproxy(folder: Path, certs: Certs, port: int, upstream: int) -> list[str]:
    conf = folder / "haproxy.cfg"
    conf.write_text(
        "global\n    nbthread 1\n"
        "defaults\n    mode tcp\n    timeout connect 5s\n    timeout client 60s\n"
        "    timeout server 60s\n"
        f"listen term\n    bind 127.0.0.1:{port} ssl crt {certs.pem}\n"
        f"    server s 127.0.0.1:{upstream}\n"
    )
    return ["haproxy", "-db", "-f", str(conf)]


PROXIES: dict[str, Launch] = {"ours": ours, "nginx": nginx, "haproxy": haproxy}


def client_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    return ctx


def one_connection(port: int, ctx: ssl.SSLContext) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as raw:
        with ctx.wrap_socket(raw, server_hostname=NAME) as tls:
            tls.sendall(PAYLOAD)
            got = b""
            while len(got) < len(PAYLOAD):
                chunk = tls.recv(len(PAYLOAD))
                if not chunk:
                    raise ConnectionError("the proxy closed before the echo")
                got += chunk


def counted(argv: list[str], port: int, connections: int, out: Path) -> dict[str, int]:
    """Run ``argv`` under callgrind, make one connection to see it serve, then
    ``connections`` more; stop it and return its instructions by shared object."""
    proc = subprocess.Popen(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},  # the package, whatever valgrind runs
    )
    ctx = client_context()
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                one_connection(port, ctx)
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"{argv[0]} did not serve under valgrind") from None
                time.sleep(0.5)
        for _ in range(connections):
            one_connection(port, ctx)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return by_object(out)


def by_object(out: Path) -> dict[str, int]:
    """Instructions per shared object of a callgrind profile (of all its parts)."""
    totals: collections.Counter[str] = collections.Counter()
    for profile in out.parent.glob(out.name + "*"):
        report = subprocess.run(
            ["callgrind_annotate", "--threshold=100", "--inclusive=no", str(profile)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for line in report.splitlines():
            row = re.match(r"\s*([\d,]+)\s+\(.*?\)\s+\S+?:.*\[(.*?)\]\s*$", line)
            if row:
                totals[Path(row.group(2)).name] += int(row.group(1).replace(",", ""))
    return dict(totals)


def group(obj: str) -> str:
    if obj.startswith(("libcrypto", "libssl", "_rust")):
        return "OpenSSL"  # cryptography's bindings: callgrind names some of libcrypto so
    if obj.startswith("libc.") or obj.startswith("ld-linux"):
        return "libc"
    if obj.startswith("libpython") or obj.startswith("_"):
        return "interpreter"
    return "proxy"


def measure(name: str, connections: int, folder: Path, certs: Certs) -> dict[str, float]:
    with echo_server() as upstream:
        rows = []
        for n in (0, connections):
            port = free_port()
            argv = PROXIES[name](folder, certs, port, upstream)
            rows.append(counted(argv, port, n, folder / f"cg.{name}.{n}"))
    per: dict[str, float] = collections.defaultdict(float)
    for obj in set(rows[0]) | set(rows[1]):
        per[group(obj)] += (rows[1].get(obj, 0) - rows[0].get(obj, 0)) / connections
    return {kind: per[kind] for kind in ("OpenSSL", "libc", "interpreter", "proxy")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.instructions", description=__doc__)
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument("--proxies", default="ours,nginx,haproxy")
    args = parser.parse_args(argv)
    names = [n for n in args.proxies.split(",") if n]
    with tempfile.TemporaryDirectory(prefix="gds-instr-") as tmp:
        folder = Path(tmp)
        certs = Certs(folder / "certs")
        results = {name: measure(name, args.connections, folder, certs) for name in names}
    print(f"instructions per terminated TLS 1.3 connection, k ({args.connections} connections)")
    print(f"{'proxy':10s} {'total':>8s} {'OpenSSL':>8s} {'libc':>8s} {'interp.':>8s} {'proxy':>8s}")
    for name, row in results.items():
        cells = "".join(f" {v / 1e3:8.0f}" for v in row.values())
        print(f"{name:10s} {sum(row.values()) / 1e3:8.0f}{cells}")
    if "ours" in results:
        for name, row in results.items():
            if name != "ours":
                ratio = sum(results["ours"].values()) / max(sum(row.values()), 1.0)
                print(f"ours/{name}: {ratio:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
