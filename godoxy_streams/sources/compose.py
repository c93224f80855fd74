"""Compose files -> ``ContainerInfo`` facts, so ``check --compose`` predicts what the daemon
will do with the same labels. Applies compose's ``${VAR}`` interpolation; reads no engine."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from godoxy_streams.containers import COMPOSE_PROJECT, COMPOSE_SERVICE, ContainerInfo, PortFact
from godoxy_streams.errors import ConfigError

_VAR = re.compile(
    r"\$(?:(?P<escaped>\$)|(?P<plain>[A-Za-z_][A-Za-z0-9_]*)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\})"
)


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Compose's variable substitution: ``$VAR``, ``${VAR}``, ``${VAR:-default}``,
    ``${VAR-default}``, ``${VAR:?error}``, ``${VAR:+alt}``; ``$$`` is a literal ``$``."""

    def sub(match: re.Match[str]) -> str:
        if match.group("escaped"):
            return "$"
        name = match.group("plain") or match.group("braced")
        op, arg = match.group("op"), match.group("arg") or ""
        value = env.get(name)
        empty = value is None or (op is not None and op.startswith(":") and value == "")
        if op in (":-", "-"):
            return arg if empty else str(value)
        if op in (":?", "?"):
            if empty:
                raise ConfigError(f"variable {name} is required: {arg or 'not set'}")
            return str(value)
        if op in (":+", "+"):
            return "" if empty else arg
        return value or ""

    return _VAR.sub(sub, text)


def _interpolate_tree(node: Any, env: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [_interpolate_tree(item, env) for item in node]
    if isinstance(node, dict):
        return {key: _interpolate_tree(value, env) for key, value in node.items()}
    return node


def read_dotenv(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        values[key.strip().removeprefix("export ").strip()] = value.strip().strip("'\"")
    return values


def _labels(node: Any) -> dict[str, str]:
    if isinstance(node, dict):
        return {str(k): "" if v is None else str(v) for k, v in node.items()}
    if isinstance(node, list):
        out = {}
        for item in node:
            key, _, value = str(item).partition("=")
            out[key.strip()] = value
        return out
    return {}


def _ports(service: Mapping[str, Any]) -> tuple[PortFact, ...]:
    facts: dict[tuple[int, str], PortFact] = {}

    def add(private: str, proto: str, public: str | None) -> None:
        if not private.isdigit():
            return
        key = (int(private), proto or "tcp")
        if key not in facts or public:
            facts[key] = PortFact(
                key[0], key[1], int(public) if public and public.isdigit() else None
            )

    for item in service.get("expose") or []:
        port, _, proto = str(item).partition("/")
        add(port, proto, None)
    for item in service.get("ports") or []:
        if isinstance(item, dict):
            add(str(item.get("target", "")), str(item.get("protocol") or "tcp"),
                str(item.get("published") or "") or None)  # fmt: skip
            continue
        spec, _, proto = str(item).partition("/")
        parts = spec.rsplit(":", 2)
        private = parts[-1]
        public = parts[-2] if len(parts) >= 2 else None
        add(private.split("-")[0], proto, public.split("-")[0] if public else None)
    return tuple(sorted(facts.values(), key=lambda p: (p.private, p.proto)))


def containers_of(document: Any, *, project: str) -> list[ContainerInfo]:
    """One ``ContainerInfo`` per compose service, named as its container will be: its
    ``container_name``, else the service (what the default alias becomes either way)."""
    if not isinstance(document, dict) or not isinstance(document.get("services"), dict):
        raise ConfigError("not a compose file: expected a top-level 'services:' mapping")
    project = str(document.get("name") or project)
    infos = []
    for name, service in document["services"].items():
        service = service if isinstance(service, dict) else {}
        deploy = service.get("deploy")
        deploy = deploy if isinstance(deploy, dict) else {}
        labels = {**_labels(deploy.get("labels")), **_labels(service.get("labels"))}
        labels.setdefault(COMPOSE_PROJECT, project)
        labels.setdefault(COMPOSE_SERVICE, str(name))
        nets = service.get("networks") or ["default"]
        network_mode = str(service.get("network_mode") or "bridge")
        infos.append(
            ContainerInfo(
                id=f"compose:{name}",
                name=str(service.get("container_name") or name),
                labels=labels,
                networks={str(n): "" for n in nets} if network_mode != "host" else {},
                network_mode=network_mode,
                ports=_ports(service),
                image=str(service.get("image") or ""),
            )
        )
    return infos


def yaml11_traps(text: str) -> list[str]:
    """Label values a YAML 1.1 reader (docker-compose v1) would turn into numbers: an unquoted
    ``2222:22`` is the base-60 number 133342 there. One note per such label."""
    try:
        typed = yaml.safe_load(text)
    except yaml.YAMLError:
        return []
    notes = []
    services = typed.get("services") if isinstance(typed, dict) else None
    for name, service in (services or {}).items():
        labels = service.get("labels") if isinstance(service, dict) else None
        for key, value in (labels or {}).items() if isinstance(labels, dict) else ():
            if isinstance(value, int | float) and not isinstance(value, bool):
                notes.append(
                    f'service "{name}": label {key} is an unquoted number to YAML 1.1 readers '
                    f"(docker-compose v1 reads it as {value}); quote the value"
                )
    return notes


def load_compose(path: Path, env: Mapping[str, str] | None = None) -> list[ContainerInfo]:
    """Read, interpolate and convert a compose file."""
    try:
        document = yaml.load(path.read_text(), Loader=yaml.BaseLoader)
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read compose file {path}: {exc}") from exc
    environment = {**read_dotenv(path.parent / ".env"), **(env if env is not None else os.environ)}
    project = re.sub(r"[^a-z0-9_-]", "", path.resolve().parent.name.lower())
    return containers_of(_interpolate_tree(document, environment), project=project)
