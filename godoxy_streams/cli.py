"""The command line: parses arguments, builds settings, runs a sub-command, sets the exit code."""

from __future__ import annotations

import argparse
import sys

from godoxy_streams import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="godoxy-streams",
        description="TCP and UDP ports for Docker containers, by label.",
    )
    parser.add_argument("--version", action="version", version=f"godoxy-streams {__version__}")
    parser.add_subparsers(dest="command", metavar="COMMAND")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    return 0
