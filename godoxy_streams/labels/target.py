"""Where a route forwards to (docs/labels.md "Where a route forwards to"): the container's
address, and the ``host`` rule that keeps labels from targeting loopback or foreign
addresses. Pure."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from godoxy_streams.containers import ContainerInfo
from godoxy_streams.errors import LabelError
from godoxy_streams.labels.context import ParseContext
from godoxy_streams.labels.precedence import FieldValue


class TargetProblem(ValueError):
    """The container has no address a route could forward to, or a network label is wrong."""


def pick_network(info: ContainerInfo, wanted: str | None, ctx: ParseContext) -> tuple[str, str]:
    """The (network name, address) to dial, and a note when the choice was not obvious.

    Returns ``("", note)`` shaped errors as ``TargetProblem``.
    """
    nets = dict(info.networks)
    if wanted:
        for name in (wanted, f"{info.compose_project}_{wanted}" if info.compose_project else ""):
            if name and name in nets:
                return name, nets[name]
        known = ", ".join(sorted(nets)) or "none"
        raise TargetProblem(f'network "{wanted}" is not one of the container\'s networks ({known})')
    shared = sorted(n for n in nets if n in ctx.own_networks and nets[n])
    if shared:
        return shared[0], nets[shared[0]]
    with_ip = sorted(n for n in nets if nets[n])
    if ctx.mode == "compose":
        with_ip = sorted(nets)
    if not with_ip:
        raise TargetProblem("the container has no network address to forward to")
    return with_ip[0], nets[with_ip[0]]


def several_networks_note(info: ContainerInfo, chosen: str) -> str | None:
    candidates = sorted(n for n, ip in info.networks.items() if ip)
    if len(candidates) > 1:
        return (
            f"container {info.name!r} is on several networks ({', '.join(candidates)}): "
            f"forwarding to {chosen!r}; set proxy.network to choose"
        )
    return None


@dataclass(frozen=True)
class Target:
    """The container's address for its routes: ``host``, or why there is none (``problem``,
    an error of each route), or a container-level ``error``; ``note`` when the choice was not
    obvious."""

    host: str | None = None
    problem: str | None = None
    note: str | None = None
    error: LabelError | None = None


def container_target(info: ContainerInfo, network: FieldValue | None, ctx: ParseContext) -> Target:
    """Where the container's routes dial (docs/labels.md "Where a route forwards to")."""
    if ctx.remote_host:
        return Target(host=ctx.remote_host)
    if info.host_network:
        return Target(host="127.0.0.1")
    wanted = network.text if network else None
    try:
        chosen, address = pick_network(info, wanted, ctx)
    except TargetProblem as exc:
        if network is None:
            return Target(problem=str(exc))
        error = LabelError(str(exc), container=info.name, label=network.label, value=network.raw)
        return Target(error=error)
    host = info.compose_service if ctx.mode == "compose" else address
    note = several_networks_note(info, chosen) if not wanted and ctx.mode == "docker" else None
    return Target(host=host, note=note)


def check_label_host(host: str, info: ContainerInfo, ctx: ParseContext) -> str | None:
    """Why a ``host`` label may not be used, or None if it may."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        if host.lower() == "localhost":
            return "loopback targets are not allowed from labels"
        if ctx.target_allowed(host):
            return None
        return (
            "a host name is allowed from labels only when the operator lists it in allowed_targets"
        )
    if address.is_loopback or address.is_link_local or address.is_unspecified:
        return "loopback, link-local and unspecified targets are never allowed from labels"
    own = {ip for ip in info.networks.values() if ip}
    if str(address) in own or ctx.target_allowed(str(address)):
        return None
    mine = ", ".join(sorted(own)) or "none"
    return f"expected one of the container's own addresses ({mine}) or an operator-allowed target"
