"""Sleep/wake labels (GoDoxy's idle watcher): a container's ``proxy.idle_timeout``,
``wake_timeout``, ``stop_method``, ``stop_timeout``, ``stop_signal`` and ``depends_on``, read
into a frozen ``IdleConfig`` with one error per bad label. Container-level only; GoDoxy's
names, defaults and meanings (its ``internal/idlewatcher`` config). Pure, no I/O.

Also here: how the routes of a sleeping container are parsed. A stopped container has no
address and a remote engine publishes no port for it, so its routes get no target until it
runs again (``asleep_view`` / ``asleep_routes``); they keep their listeners meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Literal, TypeVar, cast

import yaml

from godoxy_streams.containers import ContainerInfo
from godoxy_streams.errors import LabelError
from godoxy_streams.labels.context import ParseContext
from godoxy_streams.labels.values import (
    ValueProblem,
    parse_choice,
    parse_duration,
    parse_positive_duration,
    split_list,
)
from godoxy_streams.model import RouteSpec

StopMethod = Literal["stop", "pause", "kill"]
STOP_METHODS: tuple[StopMethod, ...] = ("stop", "pause", "kill")
IDLE_LABELS = frozenset(
    {"idle_timeout", "wake_timeout", "stop_method", "stop_timeout", "stop_signal", "depends_on"}
)
COMPOSE_DEPENDS_ON = "com.docker.compose.depends_on"
WAKE_TIMEOUT = 30.0  # GoDoxy's ContainerWakeTimeoutDefault
STOP_TIMEOUT = 60.0  # GoDoxy's ContainerStopTimeoutDefault
SIGNALS = ("SIGINT", "SIGTERM", "SIGKILL", "SIGQUIT", "SIGHUP")  # GoDoxy accepts these
CONDITIONS = {"service_started": False, "service_healthy": True}  # -> wait until healthy
ASLEEP_HOST = ""  # the target of a sleeping container's routes: none (never dialled)
_PLACEHOLDER = "asleep.invalid"
T = TypeVar("T")


@dataclass(frozen=True)
class Dependency:
    """A container to wake before this one: a compose service, container name or alias."""

    name: str
    wait_healthy: bool = False  # compose's ``service_healthy``: wait for Docker's healthy


@dataclass(frozen=True)
class IdleConfig:
    """When a container sleeps and how it is stopped and woken."""

    idle_timeout: float
    wake_timeout: float = WAKE_TIMEOUT
    stop_method: StopMethod = "stop"
    stop_timeout: float = STOP_TIMEOUT
    stop_signal: str | None = None  # e.g. "SIGINT"; None: the engine's (the image's) default
    depends_on: tuple[Dependency, ...] = ()


@dataclass(frozen=True)
class IdleLabels:
    """What a container's sleep/wake labels say: the config (None: no sleep/wake), errors
    (container-level: no route of the container starts), notes, and the label keys read."""

    config: IdleConfig | None = None
    errors: tuple[LabelError, ...] = ()
    notes: tuple[str, ...] = ()
    keys: frozenset[str] = field(default_factory=frozenset)


def _stop_method(text: str) -> StopMethod:
    return cast(StopMethod, parse_choice(text, STOP_METHODS))


def _signal(text: str) -> str | None:
    word = text.strip().upper()
    name = word if word.startswith("SIG") else "SIG" + word
    if name not in SIGNALS:
        raise ValueProblem("expected one of " + ", ".join(SIGNALS) + " (SIG may be left out)")
    return name


def _items(text: str) -> list[str]:
    """A YAML list (``- redis:service_healthy``) or a comma/space separated one."""
    if text.lstrip().startswith("-"):
        try:
            loaded = yaml.load(text, Loader=yaml.BaseLoader)
        except yaml.YAMLError:
            loaded = None
        if isinstance(loaded, list):
            return [str(item).strip() for item in loaded if str(item).strip()]
    return split_list(text)


def parse_depends_on(text: str, *, strict: bool) -> tuple[tuple[Dependency, ...], list[str]]:
    """``name[:condition[:restart]]`` items (compose's label adds ``:restart``). An unknown
    condition is a ``ValueProblem`` when ``strict`` (the user wrote it), else the item is
    skipped with a note (compose's label: e.g. a one-off ``service_completed_successfully``
    job is not woken)."""
    deps: list[Dependency] = []
    skipped: list[str] = []
    for item in _items(text):
        name, _, rest = item.partition(":")
        condition = rest.partition(":")[0].strip().lower() or "service_started"
        if not name.strip():
            if strict:
                raise ValueProblem(f"{item!r}: expected NAME[:service_started|service_healthy]")
            continue
        if condition not in CONDITIONS:
            if strict:
                raise ValueProblem(
                    f"{item!r}: condition must be service_started or service_healthy"
                )
            skipped.append(f"{name.strip()} ({condition})")
            continue
        dep = Dependency(name.strip().lower(), CONDITIONS[condition])
        if dep.name not in (d.name for d in deps):
            deps.append(dep)
    return tuple(deps), skipped


def _own_labels(labels: Mapping[str, str], namespace: str) -> dict[str, tuple[str, str]]:
    """The container-level sleep/wake labels present: field -> (label key, value)."""
    prefix = namespace.lower() + "."
    found: dict[str, tuple[str, str]] = {}
    for key, value in labels.items():
        if not key.lower().startswith(prefix):
            continue
        name = key[len(prefix) :].strip().lower().replace("-", "_")
        if name in IDLE_LABELS and str(value).strip():
            found[name] = (key, str(value))
    return found


def read_idle(labels: Mapping[str, str], namespace: str, container: str) -> IdleLabels:
    """A container's sleep/wake settings (labels.md "Container-level labels")."""
    found = _own_labels(labels, namespace)
    keys = frozenset(key for key, _ in found.values())
    if "idle_timeout" not in found:
        notes = tuple(
            f"{container}: label {key} has no effect without {namespace}.idle_timeout: ignored"
            for key, _ in sorted(found.values())
        )
        return IdleLabels(notes=notes, keys=keys)
    errors: list[LabelError] = []

    def read(name: str, convert: Callable[[str], T], default: T) -> T:
        if name not in found:
            return default
        key, raw = found[name]
        try:
            return convert(raw)
        except ValueProblem as exc:
            errors.append(LabelError(str(exc), container=container, label=key, value=raw))
            return default

    config = IdleConfig(
        idle_timeout=read("idle_timeout", parse_duration, 0.0),
        wake_timeout=read("wake_timeout", parse_positive_duration, WAKE_TIMEOUT),
        stop_method=read("stop_method", _stop_method, "stop"),
        stop_timeout=read("stop_timeout", parse_positive_duration, STOP_TIMEOUT),
        stop_signal=read("stop_signal", _signal, None),
        depends_on=read("depends_on", lambda text: parse_depends_on(text, strict=True)[0], ()),
    )
    if errors:
        return IdleLabels(errors=tuple(errors), keys=keys)
    if config.idle_timeout == 0:  # GoDoxy: zero means no idle watcher
        return IdleLabels(keys=keys)
    skipped: list[str] = []
    if "depends_on" not in found and labels.get(COMPOSE_DEPENDS_ON, "").strip():
        deps, skipped = parse_depends_on(labels[COMPOSE_DEPENDS_ON], strict=False)
        config = replace(config, depends_on=deps)
    notes = tuple(f"{container}: dependency {s} is not woken with it" for s in skipped)
    return IdleLabels(config=config, notes=notes, keys=keys)


def asleep_view(info: ContainerInfo, ctx: ParseContext) -> tuple[ContainerInfo, ParseContext]:
    """The container and context to parse a sleeping container's routes with: a placeholder
    address on each of its networks, and no remote host (its published ports are unknown
    until it runs), so its labels still give every route and every error."""
    if info.host_network:
        return info, replace(ctx, remote_host=None)
    networks = {name: _PLACEHOLDER for name in info.networks} or {"none": _PLACEHOLDER}
    return replace(info, networks=networks), replace(ctx, remote_host=None)


def asleep_routes(routes: tuple[RouteSpec, ...]) -> tuple[RouteSpec, ...]:
    """Routes parsed from ``asleep_view``, with the placeholder address taken out."""
    return tuple(
        r.model_copy(update={"target_host": ASLEEP_HOST}) if r.target_host == _PLACEHOLDER else r
        for r in routes
    )
