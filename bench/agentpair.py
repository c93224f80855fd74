"""The two processes of the "ours-agent" bench subject: the agent and a daemon whose routes
dial through the agent's tunnel, both running the package's real code on loopback.

    python -m bench.agentpair agent --listen HOST:PORT --certs DIR --allow HOST:PORT ...
    python -m bench.agentpair daemon --agent HOST:PORT --certs DIR -- RUN-ARGS...

``agent``: ``godoxy_streams.agent.server.server.serve_agent`` with the agent's own TLS context
(``server_context``, ALPN stream + http/1.1; QUIC on the same port number), event loop and
logging, exactly as
``godoxy-streams agent`` sets them up. One difference: its allow-list of destinations is the
fixed ``--allow`` set instead of what the local Docker engine's labelled containers publish
(the bench backend is no container): ``FixedDestinations``, whose ``permits`` is the real one
and which never asks an engine.

``daemon``: ``godoxy-streams run RUN-ARGS`` (the same settings, ``Daemon`` and loop as the
``ours`` subject) with one addition: the static routes' engine ("local") is given a
``Tunnel`` to the agent (``daemon.agent_tunnel``, as for an ``agent://`` engine). So the
routes file's routes are served like an agent's containers' routes: every upstream TCP
connection (and health probe) is a mutual-TLS connection to the agent with ALPN
``godoxy-streams-stream/1`` and the 78-byte stream header, then raw bytes; every UDP session
is a flow on the daemon's QUIC connection to the agent (ALPN ``godoxy-streams-datagram/1``).
"""

from __future__ import annotations

import argparse
import ssl
import sys
from pathlib import Path

from aioquic.quic.configuration import QuicConfiguration

from godoxy_streams.agent.certs import CertFiles, server_context
from godoxy_streams.agent.quic.config import server_configuration
from godoxy_streams.agent.server.destinations import FixedDestinations
from godoxy_streams.agent.server.server import serve_agent
from godoxy_streams.agent.wire.header import ALPN_HTTP, ALPN_STREAM
from godoxy_streams.docker_endpoints import EngineSettings

STATIC_ENGINE = "local"  # RouteOrigin.engine of a routes-file route
NO_ENGINE = "unix:///nonexistent/docker.sock"  # never dialled: the allow-list is fixed


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, not {text!r}")
    return host.strip("[]"), int(port)


async def _serve_agent(
    host: str,
    port: int,
    context: ssl.SSLContext,
    datagrams: QuicConfiguration,
    allowed: list[tuple[str, int]],
) -> None:
    """``serve_agent`` with the fixed allow-list."""
    await serve_agent(
        host,
        port,
        NO_ENGINE,
        "proxy",
        context,
        destinations=FixedDestinations(
            (proto, *pair) for pair in allowed for proto in ("tcp", "udp")
        ),
        datagrams=datagrams,
    )


def run_agent(args: argparse.Namespace) -> int:
    from godoxy_streams.app.logs import setup_logging
    from godoxy_streams.app.loops import run
    from godoxy_streams.settings import LogSettings

    files = CertFiles.in_folder(args.certs)
    context = server_context(files.ca, files.agent, files.agent_key, [ALPN_STREAM, ALPN_HTTP])
    datagrams = server_configuration(files.ca, files.agent, files.agent_key)
    setup_logging(LogSettings(level=args.log_level, format="text"))
    host, port = args.listen
    run(_serve_agent(host, port, context, datagrams, args.allow))
    return 0


def run_daemon(args: argparse.Namespace) -> int:
    from godoxy_streams.app import daemon
    from godoxy_streams.app.cli import build_parser, load_settings

    run_args = build_parser().parse_args(["run", *args.run_args])
    settings = load_settings(run_args)
    files = CertFiles.in_folder(args.certs)
    host, port = args.agent
    engine = EngineSettings(
        url=f"agent://{host}:{port}",
        tls_ca=files.ca,
        tls_cert=files.daemon,
        tls_key=files.daemon_key,
    )
    # What Daemon does for an agent:// engine, here for the routes file's engine.
    return daemon.run_daemon(settings, {STATIC_ENGINE: daemon.agent_tunnel(engine)})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.agentpair")
    sub = p.add_subparsers(dest="side", required=True)
    agent = sub.add_parser("agent", help="the agent, with a fixed allow-list")
    agent.add_argument("--listen", type=_address, required=True, metavar="HOST:PORT")
    agent.add_argument("--certs", type=Path, required=True, metavar="DIR")
    agent.add_argument(
        "--allow", type=_address, action="append", required=True, metavar="HOST:PORT"
    )
    agent.add_argument("--log-level", default="WARNING")
    daemon = sub.add_parser("daemon", help="godoxy-streams run, its routes through the agent")
    daemon.add_argument("--agent", type=_address, required=True, metavar="HOST:PORT")
    daemon.add_argument("--certs", type=Path, required=True, metavar="DIR")
    daemon.add_argument("run_args", nargs=argparse.REMAINDER, help="after --: run's arguments")
    args = p.parse_args(argv)
    if args.side == "agent":
        return run_agent(args)
    if args.run_args[:1] == ["--"]:
        args.run_args = args.run_args[1:]
    return run_daemon(args)


if __name__ == "__main__":
    sys.exit(main())
