"""The runtime's entries in the event timeline: routes started, stopped, retargeted or failed
to bind, and members going down or up (by their probe or by Docker's health check).

Small functions over an ``EventLog`` so the manager and the health checks record a change
with one call where it happens; the wording is the operator's (alias, socket, upstream).
"""

from __future__ import annotations

from godoxy_streams.events import EventLog
from godoxy_streams.model import Member, RouteSpec
from godoxy_streams.streams.sockets import where


def upstreams(spec: RouteSpec) -> str:
    return ", ".join(where(m.address) for m in spec.members)


def started(events: EventLog, spec: RouteSpec, port: int) -> None:
    listen = where((spec.bind, port))
    events.route("route_started", spec, f"{spec.scheme} {listen} -> {upstreams(spec)}")


def stopped(events: EventLog, spec: RouteSpec, port: int) -> None:
    events.route("route_stopped", spec, f"{spec.scheme} {where((spec.bind, port))} closed")


def failed(events: EventLog, spec: RouteSpec, message: str) -> None:
    events.route("route_failed", spec, message)


def retargeted(events: EventLog, old: RouteSpec, new: RouteSpec) -> None:
    """A changed member set (by address) and members whose Docker health moved."""
    if [m.address for m in old.members] != [m.address for m in new.members]:
        events.route("route_retargeted", new, f"now -> {upstreams(new)}")
    before = {member_id(m): m.origin.health for m in old.members}
    for m in new.members:
        was, now = before.get(member_id(m), m.origin.health), m.origin.health
        if was != now and "healthy" in (was, now):
            kind = "member_up" if now == "healthy" else "member_down"
            text = f"{where(m.address)} ({m.origin.name}): Docker health {now}"
            events.route(kind, new, text)


def member_id(member: Member) -> tuple[str, str, str]:
    return (member.origin.engine, member.origin.id or member.origin.name, member.alias)


def probed(events: EventLog, spec: RouteSpec, member: Member, up: bool, error: str | None) -> None:
    """A member's health probe flipped."""
    who = f"{where(member.address)} ({member.origin.name})"
    if up:
        events.route("member_up", spec, f"{who}: probe succeeds again")
    else:
        events.route("member_down", spec, f"{who}: probe fails: {error}")
