"""The static routes file: read the operator's YAML and parse it into routes (no Docker
needed). Read as YAML 1.1 scalars left as strings (``BaseLoader``), so ``port: 22:22`` is the
string the label grammar expects, never a base-60 number."""

from __future__ import annotations

from pathlib import Path

import yaml

from godoxy_streams.errors import ConfigError
from godoxy_streams.labels import ParseContext, ParseResult, parse_static_routes


def load_routes_file(path: Path, ctx: ParseContext) -> ParseResult:
    try:
        document = yaml.load(path.read_text(), Loader=yaml.BaseLoader)
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read routes file {path}: {exc}") from exc
    return parse_static_routes(document or {"routes": {}}, ctx)
