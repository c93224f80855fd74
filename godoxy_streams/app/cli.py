"""The command line: parses arguments, builds the settings once, runs a sub-command and turns
the outcome into an exit code. Kept thin: every sub-command lives in its own module."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from godoxy_streams import __version__
from godoxy_streams.app.agent_command import (
    add_agent_parser,
    add_lifecycle_flags,
    run_agent_command,
)
from godoxy_streams.app.context import settings_context
from godoxy_streams.errors import ConfigError, EngineError
from godoxy_streams.settings import Settings

EPILOG = """\
examples:
  godoxy-streams run                          follow the local Docker engine
  godoxy-streams run --routes routes.yml      also serve static routes
  godoxy-streams check --compose compose.yml  validate labels before deploying
  godoxy-streams routes                       what a running daemon serves

Settings come from defaults < --config FILE < GODOXY_STREAMS_* environment < flags.
"""


def _settings_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("settings")
    group.add_argument("--config", type=Path, metavar="FILE", help="YAML file of settings")
    group.add_argument("--namespace", metavar="NS", help="label namespace (default: proxy)")
    group.add_argument("--default-bind", metavar="IP", help="listen address (default: 0.0.0.0)")
    group.add_argument(
        "--docker", action="append", metavar="URL", help="Docker endpoint (repeatable)"
    )
    group.add_argument("--no-docker", action="store_true", default=None, help="no Docker engine")
    group.add_argument(
        "--routes", dest="routes_file", type=Path, metavar="FILE", help="static routes file"
    )
    group.add_argument(
        "--allowed-target",
        dest="allowed_targets",
        action="append",
        metavar="HOST|CIDR",
        help="extra target a label may name with host: (repeatable)",
    )
    group.add_argument(
        "--tls-port", type=int, metavar="PORT", help="shared TLS port: TCP routes there go by SNI"
    )
    group.add_argument(
        "--certificates-dir", type=Path, metavar="DIR", help="certificates for TLS termination"
    )
    group.add_argument("--api", metavar="HOST:PORT", help="status API (default: 127.0.0.1:8899)")
    group.add_argument(
        "--state-dir", type=Path, metavar="DIR", help="where picked listen ports are kept"
    )
    group.add_argument("--log-level", metavar="LEVEL", help="DEBUG, INFO, WARNING, ...")
    group.add_argument("--log-format", choices=("text", "json"), help="log line format")
    group.add_argument(
        "--fast-path",
        choices=("off", "auto", "nftables"),
        help="forward plain routes in the kernel with nftables DNAT (needs root or "
        "CAP_NET_ADMIN and host networking; auto: when possible; default: off)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="godoxy-streams",
        description="TCP and UDP ports for Docker containers, by label.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"godoxy-streams {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = commands.add_parser("run", help="run the daemon")
    _settings_flags(run)

    check = commands.add_parser(
        "check", help="validate labels or a routes file and print the routes they declare"
    )
    source = check.add_mutually_exclusive_group()
    source.add_argument("--compose", type=Path, metavar="FILE", help="a compose file")
    check.add_argument("--json", action="store_true", help="print JSON for machines")
    _settings_flags(check)

    config = commands.add_parser("config", help="print the effective configuration")
    _settings_flags(config)

    routes = commands.add_parser("routes", help="print the routes of a running daemon")
    routes.add_argument("--json", action="store_true", help="print the API's JSON")
    _settings_flags(routes)

    proxy = commands.add_parser(
        "socket-proxy", help="serve a read-only filter of the Docker socket for the daemon"
    )
    proxy.add_argument(
        "--listen",
        type=Path,
        default=Path("/run/godoxy/docker.sock"),
        metavar="PATH",
        help="unix socket to serve (default: /run/godoxy/docker.sock)",
    )
    proxy.add_argument(
        "--engine",
        default="/var/run/docker.sock",
        metavar="PATH",
        help="the engine's unix socket (default: /var/run/docker.sock)",
    )
    proxy.add_argument(
        "--mode",
        type=lambda text: int(text, 8),
        default=0o660,
        metavar="OCTAL",
        help="file mode of the served socket (default: 0660)",
    )
    add_lifecycle_flags(proxy)
    proxy.add_argument(
        "--log-level", type=str.upper, default="INFO", choices=("DEBUG", "INFO", "WARNING")
    )
    proxy.add_argument("--log-format", choices=("text", "json"), default="text")
    add_agent_parser(commands)
    return parser


def load_settings(args: argparse.Namespace) -> Settings:
    flags: dict[str, Any] = {
        "namespace": args.namespace,
        "default_bind": args.default_bind,
        "docker": tuple(args.docker) if args.docker else None,
        "no_docker": args.no_docker,
        "routes_file": args.routes_file,
        "allowed_targets": tuple(args.allowed_targets) if args.allowed_targets else None,
        "api": args.api,
        "state_dir": args.state_dir,
        "tls_port": args.tls_port,
        "certificates_dir": args.certificates_dir,
        "fast_path": args.fast_path,
    }
    log = {k: v for k, v in (("level", args.log_level), ("format", args.log_format)) if v}
    if log:
        flags["log"] = log
    return Settings.load(args.config, **flags)


def _check(args: argparse.Namespace, settings: Settings) -> int:
    from godoxy_streams.app import check
    from godoxy_streams.sources.routes_file import load_routes_file

    ctx = settings_context(settings)
    if args.compose:
        report = check.check_compose(args.compose, ctx)
    elif settings.routes_file:
        report = check.report_for([], load_routes_file(settings.routes_file, ctx), ctx)
    else:
        report = asyncio.run(check.check_engines(settings.docker, ctx))
    print(check.render(report, as_json=args.json))
    return 1 if report.errors else 0


def _config(settings: Settings) -> int:
    print(json.dumps(settings.model_dump(mode="json"), indent=2))
    return 0


def _run(settings: Settings) -> int:
    from godoxy_streams.app.daemon import run_daemon

    return run_daemon(settings)


def _routes(args: argparse.Namespace, settings: Settings) -> int:
    from godoxy_streams.app.routes_command import show_routes

    return show_routes(settings.api, as_json=args.json, token=settings.api_token)


def _socket_proxy(args: argparse.Namespace) -> int:
    from godoxy_streams.app.logs import setup_logging
    from godoxy_streams.settings import LogSettings
    from godoxy_streams.sources.socket_proxy import run_socket_proxy

    setup_logging(LogSettings(level=args.log_level, format=args.log_format))
    lifecycle = args.namespace if args.allow_lifecycle else None
    return run_socket_proxy(args.listen, args.engine, args.mode, lifecycle)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        if args.command == "socket-proxy":
            return _socket_proxy(args)
        if args.command == "agent":
            return run_agent_command(args)
        settings = load_settings(args)
        if args.command == "check":
            return _check(args, settings)
        if args.command == "config":
            return _config(settings)
        if args.command == "routes":
            return _routes(args, settings)
        return _run(settings)
    except ConfigError as exc:
        print(f"godoxy-streams: {exc}", file=sys.stderr)
        return 2
    except EngineError as exc:
        print(f"godoxy-streams: {exc}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        return 130
