"""The proxies of the SNI scenarios, and the TLS backend behind them.

Each listens on two sockets: the ``echo`` port is one socket for two TLS server names,
passed through by name to the TLS backend (``echo.bench.test`` to its echo port,
``bulk.bench.test`` to its source port), and the ``bulk`` port terminates TLS for
``term.bench.test`` with the proxy's own certificate, in front of the plain C backend's echo
port. nginx uses ``ssl_preread`` and stream ``ssl``, HAProxy ``req.ssl_sni`` and ``bind ...
ssl``, ours ``sni`` routes and ``tls_termination``. One certificate (ECDSA P-256) serves all
three names, for the TLS backend and the terminating proxies alike. The proxies' TLS
settings are their defaults (each issues TLS 1.3 session tickets); the clients never resume,
so every connection is a full handshake.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from bench import procs
from bench.proxies import HOST, HAProxy, Nginx, Ours, Proxy, PyRef, _ours_help

NAMES = ("echo.bench.test", "bulk.bench.test", "term.bench.test")


class Certs:
    """The run's certificate, made once in ``folder`` (``agent.certs.create_certs``)."""

    def __init__(self, folder: Path) -> None:
        from godoxy_streams.agent.certs import create_certs

        shutil.rmtree(folder, ignore_errors=True)
        files = create_certs(folder, list(NAMES))
        self.cert, self.key = files.agent, files.agent_key
        self.pem = folder / "bench.pem"  # HAProxy: chain and key in one file
        self.pem.write_bytes(self.cert.read_bytes() + self.key.read_bytes())
        self.directory = folder / "served"  # ours: a certificates_dir
        self.directory.mkdir()
        (self.directory / "bench.crt").write_bytes(self.cert.read_bytes())
        (self.directory / "bench.key").write_bytes(self.key.read_bytes())


def certs_of(proxy: Proxy) -> Certs:
    """The run's certificate (made on first use, in the proxies' conf folder)."""
    global _CERTS
    if _CERTS is None:
        _CERTS = Certs(proxy.workdir / "conf" / "sni-certs")
    return _CERTS


_CERTS: Certs | None = None


def start_tls_backend(
    loadgen: Path, folder: Path, logs: Path
) -> tuple[subprocess.Popen[bytes], int, int]:
    """The TLS backend (``loadgen tlsbackend``): its process, echo port and source port."""
    global _CERTS
    _CERTS = Certs(folder)
    echo, source = procs.free_ports(2)
    proc = procs.spawn(
        [
            str(loadgen), "tlsbackend",
            "--host", HOST,
            "--echo-port", str(echo),
            "--bulk-port", str(source),
            "--cert", str(_CERTS.cert),
            "--key", str(_CERTS.key),
        ],
        log=logs / "tls-backend.log",
    )  # fmt: skip
    if not procs.wait_until(lambda: procs.tcp_accepts(HOST, source), 10.0):
        procs.stop(proc)
        raise RuntimeError(f"the TLS backend did not start; see {logs / 'tls-backend.log'}")
    return proc, echo, source


class HAProxySNI(HAProxy):
    name = "haproxy-sni"
    description = "HAProxy, nbthread 1: req.ssl_sni passthrough; bind ssl termination"
    template = "haproxy-sni.cfg"
    tls = True

    def template_values(self) -> dict[str, object]:
        return {"pem": certs_of(self).pem}


class NginxSNI(Nginx):
    name = "nginx-sni"
    description = "nginx stream, 1 worker: ssl_preread passthrough; stream ssl termination"
    template = "nginx-sni.conf"
    udp = False
    tls = True

    def template_values(self) -> dict[str, object]:
        certs = certs_of(self)
        return {"cert": certs.cert, "key": certs.key}


class OursSNI(Ours):
    name = "ours-sni"
    description = "godoxy-streams: sni routes (passthrough) and tls_termination"
    routes_template = "routes-sni.yml"
    udp = False
    tls = True
    baselines = ("nginx-sni", "haproxy-sni", "pyref-sni")

    def unavailable(self) -> str | None:
        if "--certificates-dir" not in _ours_help():
            return "`godoxy-streams run` has no --certificates-dir option yet"
        return super().unavailable()

    def argv(self) -> list[str]:
        return [*super().argv(), "--certificates-dir", str(certs_of(self).directory)]


class PyRefSNI(PyRef):
    """Opt-in (--proxies ...,pyref-sni): the naive proxy's loop TLS server on the
    terminated socket, nothing more (no routing by name, no caps, no counters): what uvloop
    and Python's ``ssl`` alone spend per handshake, the floor under ours-sni's sniterm."""

    name = "pyref-sni"
    description = "bench/refproxy.py: uvloop's TLS server, the terminated socket only (opt-in)"
    udp = False
    tls = True
    scenarios = frozenset({"sniterm"})

    def argv(self) -> list[str]:
        routes = self.render("routes-sni.yml", f"{self.name}-routes.yml")
        directory = str(certs_of(self).directory)
        return [sys.executable, "-m", "bench.refproxy", "--routes", str(routes),
                "--certificates-dir", directory]  # fmt: skip

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            return super()._ready()  # raises, with the log
        return procs.tcp_accepts(self.bind, self.listen.bulk)


SNI_PROXIES: dict[str, type[Proxy]] = {
    cls.name: cls for cls in (HAProxySNI, NginxSNI, OursSNI, PyRefSNI)
}
SNI_DEFAULT = ["haproxy-sni", "nginx-sni", "ours-sni"]
