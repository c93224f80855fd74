"""The ``agent`` command: ``godoxy-streams agent`` serves the agent port on a Docker host;
``godoxy-streams agent certs`` makes the CA and the agent's and daemon's certificates."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

DEFAULT_PORT = 8890


def add_lifecycle_flags(parser: Any, namespace: bool = True) -> None:
    """``--allow-lifecycle`` (and ``--namespace``) of the socket filter and the agent."""
    parser.add_argument(
        "--allow-lifecycle",
        action="store_true",
        help="also forward POST /containers/{id}/start|stop|pause|unpause|kill, for containers "
        "whose labels carry <namespace>.idle_timeout (and the containers they depend_on) only: "
        "what sleep/wake needs; everything else stays 403",
    )
    if namespace:
        parser.add_argument("--namespace", default="proxy", help="label namespace (default: proxy)")


def add_agent_parser(commands: Any) -> None:
    agent = commands.add_parser(
        "agent",
        help="serve this Docker host to a remote daemon (mutual TLS; TCP tunnels, UDP over QUIC)",
    )
    agent.add_argument(
        "--listen",
        default=f"0.0.0.0:{DEFAULT_PORT}",
        metavar="HOST:PORT",
        help=f"address of the agent port, TCP and UDP (default: 0.0.0.0:{DEFAULT_PORT})",
    )
    agent.add_argument(
        "--no-udp",
        action="store_true",
        help="do not serve UDP flows (no QUIC port; capabilities say udp: false)",
    )
    agent.add_argument(
        "--engine",
        default="unix:///var/run/docker.sock",
        metavar="URL",
        help="this host's Docker socket (default: unix:///var/run/docker.sock)",
    )
    agent.add_argument("--namespace", default="proxy", help="label namespace (default: proxy)")
    add_lifecycle_flags(agent, namespace=False)
    for name, what in (
        ("ca", "the CA that signed the daemon's certificate"),
        ("cert", "the agent's certificate"),
        ("key", "the agent's private key"),
    ):
        agent.add_argument(f"--tls-{name}", type=Path, metavar="FILE", help=what)
    agent.add_argument(
        "--log-level", type=str.upper, default="INFO", choices=("DEBUG", "INFO", "WARNING")
    )
    agent.add_argument("--log-format", choices=("text", "json"), default="text")
    sub = agent.add_subparsers(dest="agent_command", metavar="{certs}")
    certs = sub.add_parser("certs", help="create a CA, an agent and a daemon certificate")
    certs.add_argument("--out", type=Path, default=Path("godoxy-certs"), metavar="DIR")
    certs.add_argument(
        "--name",
        action="append",
        required=True,
        metavar="HOST",
        help="a name or IP the daemon uses to reach the agent (repeatable)",
    )
    certs.add_argument("--days", type=int, default=825, help="validity (default: 825)")


def run_agent_command(args: argparse.Namespace) -> int:
    from godoxy_streams.agent.certs import create_certs, instructions
    from godoxy_streams.errors import ConfigError

    if args.agent_command == "certs":
        files = create_certs(args.out, args.name, days=args.days)
        first = args.name[0].strip("[]")
        host = f"[{first}]" if ":" in first else first
        print(instructions(files, f"{host}:{DEFAULT_PORT}"))
        return 0
    if not (args.tls_ca and args.tls_cert and args.tls_key):
        raise ConfigError("the agent needs --tls-ca, --tls-cert and --tls-key")
    from godoxy_streams.agent.certs import server_context
    from godoxy_streams.agent.quic.config import server_configuration
    from godoxy_streams.agent.server.server import serve_agent
    from godoxy_streams.agent.wire.header import ALPN_HTTP, ALPN_STREAM
    from godoxy_streams.app.logs import setup_logging
    from godoxy_streams.app.loops import run
    from godoxy_streams.settings import LogSettings, api_address

    host, port = api_address(args.listen)
    if port < 0:
        raise ConfigError(f"--listen {args.listen!r}: expected HOST:PORT")
    context = server_context(args.tls_ca, args.tls_cert, args.tls_key, [ALPN_STREAM, ALPN_HTTP])
    datagrams = None
    if not args.no_udp:
        datagrams = server_configuration(args.tls_ca, args.tls_cert, args.tls_key)
    setup_logging(LogSettings(level=args.log_level, format=args.log_format))
    lifecycle = args.allow_lifecycle
    run(
        serve_agent(
            host,
            port,
            args.engine,
            args.namespace,
            context,
            datagrams=datagrams,
            lifecycle=lifecycle,
        )
    )
    return 0
