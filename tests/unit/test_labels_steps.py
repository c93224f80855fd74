"""The steps of ``build_routes`` (labels/fields.py), each on its own, table-driven."""

from __future__ import annotations

from typing import Any

import pytest

from godoxy_streams.containers import PortFact
from godoxy_streams.labels import ParseContext
from godoxy_streams.labels.catalog import classify
from godoxy_streams.labels.fields import (
    Problems,
    RouteFacts,
    not_a_stream,
    proxy_protocol,
    publish,
    read_bind,
    read_host,
    read_ports,
    read_scheme,
    schemes_for,
    target_ports,
)
from godoxy_streams.labels.precedence import FieldValue
from godoxy_streams.model import RouteOrigin

from .labelkit import parse

ORIGIN = RouteOrigin(kind="docker", name="web")
FACTS = RouteFacts(container="web", origin=ORIGIN, target_host="172.17.0.5")


def fv(text: str, label: str = "proxy.a.x") -> FieldValue:
    return FieldValue(text, label, text, "named", 2)


def problems() -> Problems:
    return Problems("web", "a")


def messages(p: Problems) -> list[str]:
    return [e.message for e in p.errors]


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("port", "known"),
        ("healthcheck.disabled", "known"),
        ("loadbalance.mode", "known"),
        ("acl.allow", "known"),
        ("middlewares.redirect.to", "ignored"),
        ("homepage", "ignored"),
        ("healthcheck.path", "ignored"),
        ("load_balance.link", "ignored"),
        ("prot", "unknown"),
        ("acl.allowed", "unknown"),
    ],
)
def test_classify(name: str, kind: str) -> None:
    out = classify({name: fv("1")})
    found = {
        "known": bool(out.known),
        "ignored": bool(out.ignored),
        "unknown": bool(out.unknown),
    }
    assert [k for k, v in found.items() if v] == [kind]


@pytest.mark.parametrize(
    ("scheme", "port", "want_scheme", "why_not"),
    [
        (None, None, None, "no stream scheme and no LISTEN port"),
        (None, "3000", None, "no stream scheme and no LISTEN port"),
        (None, ":22", None, "no stream scheme and no LISTEN port"),
        (None, "2222:22", None, None),
        ("tcp", None, "tcp", None),
        ("UDP6", "53", "udp6", None),
        ("tcp+udp", "53", "tcp+udp", None),
        ("http", "2222:22", "http", "scheme http"),
        ("fileserver", None, "fileserver", "scheme fileserver"),
        ("tpc", None, None, None),  # invalid: an error, and still a stream route
    ],
)
def test_read_scheme_and_not_a_stream(
    scheme: str | None, port: str | None, want_scheme: str | None, why_not: str | None
) -> None:
    p = problems()
    scheme_fv = fv(scheme) if scheme else None
    port_fv = fv(port) if port else None
    got = read_scheme(scheme_fv, p)
    assert got == want_scheme
    assert not_a_stream(got, scheme_fv, port_fv) == why_not
    assert bool(p.errors) == (scheme == "tpc")


@pytest.mark.parametrize(
    ("port", "scheme", "exposed", "want", "error"),
    [
        ("2222:22", "tcp", {}, (2222, 22), None),
        ("22", "tcp", {}, (None, 22), None),
        (":22", "tcp", {}, (None, 22), None),
        ("22x", "tcp", {}, (None, None), "expected [LISTEN:]TARGET"),
        (None, "tcp", {6379: {"tcp"}}, (None, 6379), None),
        (None, "tcp", {1: {"tcp"}, 2: {"tcp"}}, (None, None), "exposes 2 ports (1, 2)"),
        (None, "tcp", {}, (None, None), "exposes 0 ports;"),
        (None, None, {}, (None, None), None),
    ],
)
def test_read_ports(
    port: str | None,
    scheme: str | None,
    exposed: dict[int, set[str]],
    want: tuple[int | None, int | None],
    error: str | None,
) -> None:
    p = problems()
    facts = {k: frozenset(v) for k, v in exposed.items()}
    got = read_ports(fv(port) if port else None, fv(scheme) if scheme else None, facts, p)
    assert got == want
    assert (error is None and not p.errors) or (error and error in messages(p)[0])


@pytest.mark.parametrize(
    ("scheme", "target", "exposed", "want"),
    [
        ("tcp4", 22, {}, ["tcp4"]),
        ("tcp+udp", 53, {}, ["tcp", "udp"]),
        (None, 53, {53: {"udp"}}, ["udp"]),
        (None, 53, {53: {"udp", "tcp"}}, ["tcp"]),
        (None, 53, {}, ["tcp"]),
        (None, None, {}, []),
    ],
)
def test_schemes_for(
    scheme: str | None, target: int | None, exposed: dict[int, set[str]], want: list[str]
) -> None:
    assert schemes_for(scheme, target, {k: frozenset(v) for k, v in exposed.items()}) == want


@pytest.mark.parametrize(
    ("known", "schemes", "want", "error"),
    [
        ({"relay_proxy_protocol_header": "true"}, ["tcp"], "v2", None),
        ({"relay_proxy_protocol_header": "false"}, ["tcp"], None, None),
        ({"relay_proxy_protocol_header": "perhaps"}, ["tcp"], None, "expected a boolean"),
        ({"relay_proxy_protocol_header": "true"}, ["tcp", "udp"], "v2", "TCP routes only"),
    ],
)
def test_proxy_protocol(
    known: dict[str, str], schemes: list[str], want: str | None, error: str | None
) -> None:
    p, values = problems(), {}
    proxy_protocol({k: fv(v) for k, v in known.items()}, values, schemes, p)
    assert values.get("proxy_protocol") == want
    assert (error is None and not p.errors) or (error and error in messages(p)[0])


@pytest.mark.parametrize(
    ("bind", "schemes", "default", "want", "error"),
    [
        (None, ["tcp"], "0.0.0.0", "0.0.0.0", None),
        (None, ["tcp6"], "0.0.0.0", "::", None),
        (None, ["udp4"], "::", "0.0.0.0", None),
        (None, ["tcp"], "127.0.0.1", "127.0.0.1", None),
        ("::1", ["tcp"], "0.0.0.0", "::1", None),
        ("::", ["tcp4"], "0.0.0.0", "::", "an IPv6 bind does not fit scheme tcp4"),
        ("10.0.0.1", ["udp6"], "0.0.0.0", "10.0.0.1", "an IPv4 bind does not fit scheme udp6"),
        ("nope", ["tcp"], "0.0.0.0", "0.0.0.0", "expected an IP address"),
    ],
)
def test_read_bind(
    bind: str | None, schemes: list[str], default: str, want: str, error: str | None
) -> None:
    p = problems()
    assert read_bind(fv(bind) if bind else None, schemes, default, p) == want
    assert (error is None and not p.errors) or (error and error in messages(p)[0])


@pytest.mark.parametrize(
    ("host", "schemes", "facts", "want", "error"),
    [
        (None, ["tcp"], {}, "172.17.0.5", None),
        ("[10.0.0.9]", ["tcp"], {}, "10.0.0.9", None),
        ("DB.internal", ["tcp"], {}, "db.internal", None),
        ("10.0.0.9", ["tcp"], {"label_host_check": lambda t: "not yours"}, "10.0.0.9", "not yours"),
        (None, ["tcp6"], {"default_host_v6": "::1"}, "::1", None),
        (None, ["tcp"], {"target_host": None, "target_problem": "no address"}, None, "no address"),
    ],
)
def test_read_host(
    host: str | None,
    schemes: list[str],
    facts: dict[str, Any],
    want: str | None,
    error: str | None,
) -> None:
    p = problems()
    the_facts = RouteFacts(**{**FACTS.__dict__, **facts})
    assert read_host(fv(host) if host else None, schemes, the_facts, p) == want
    assert (error is None and not p.errors) or (error and error in messages(p)[0])


PUBLISHED = {(53, "tcp"): 30053, (53, "udp"): 30054, (30053, "udp"): 40000}


@pytest.mark.parametrize(
    ("target", "schemes", "remote", "host_label", "want", "error"),
    [
        (53, ["tcp", "udp"], False, False, {"tcp": 53, "udp": 53}, None),
        # a remote engine: each protocol dials the port published for that protocol
        (53, ["tcp", "udp"], True, False, {"tcp": 30053, "udp": 30054}, None),
        (53, ["udp4"], True, False, {"udp4": 30054}, None),
        (53, ["tcp", "udp"], True, True, {"tcp": 53, "udp": 53}, None),
        (22, ["tcp"], True, False, {}, "port 22/tcp is not published on the remote host"),
        (None, ["tcp"], True, False, {}, None),
    ],
)
def test_target_ports(
    target: int | None,
    schemes: list[str],
    remote: bool,
    host_label: bool,
    want: dict[str, int],
    error: str | None,
) -> None:
    p = problems()
    facts = RouteFacts(**{**FACTS.__dict__, "remote": remote, "published": PUBLISHED})
    assert target_ports(target, schemes, facts, host_label, p) == want
    assert (error is None and not p.errors) or (error and error in messages(p)[0])


def test_publish_gives_each_protocol_its_own_fields() -> None:
    values = {"max_connections": 5, "udp_timeout": 9.0, "on_stop": "kill"}
    tcp, udp = publish(
        "a", "0.0.0.0", 53, "10.0.0.2", {"tcp": 1053, "udp": 2053}, values, {}, ORIGIN
    )
    assert (tcp.scheme, tcp.target_port, tcp.max_connections, tcp.udp_timeout) == (
        "tcp",
        1053,
        5,
        60.0,
    )
    assert (udp.scheme, udp.target_port, udp.max_connections, udp.udp_timeout) == (
        "udp",
        2053,
        None,
        9.0,
    )
    assert tcp.on_stop == udp.on_stop == "kill"


def test_tcp_plus_udp_on_a_remote_engine_dials_each_protocols_published_port() -> None:
    ctx = ParseContext(remote_host="192.0.2.7")
    ports = [PortFact(53, "tcp", 30053), PortFact(53, "udp", 30054), PortFact(30053, "udp", 40000)]
    labels = {"proxy.dns.scheme": "tcp+udp", "proxy.dns.port": "5353:53"}
    result = parse(labels, ctx, ports=ports)
    assert not result.errors
    assert [(r.scheme, r.listen_port, r.target) for r in result.routes] == [
        ("tcp", 5353, ("192.0.2.7", 30053)),
        ("udp", 5353, ("192.0.2.7", 30054)),
    ]


@pytest.mark.parametrize(
    ("name", "project", "service", "number"),
    [
        ("shop-echo-2", "shop", "echo", "2"),
        ("shop_echo_12", "shop", "echo", "12"),
        ("Shop-Echo-3", "shop", "echo", "3"),
        ("echo.1", "", "echo", "1"),
        ("echo.1.k3jd9s8f0a", "shop", "echo", "1"),
        ("echo.x", "", "echo", None),
        ("shop-echo-", "shop", "echo", None),
        ("shop-echo-2a", "shop", "echo", None),
        ("my-echo", "shop", "echo", None),
        ("shop-echo-2", "", "echo", None),  # no project: only Swarm's form
        ("shop-web-echo-2", "shop", "echo", None),
    ],
)
def test_replica_numbers_of_generated_names(
    name: str, project: str, service: str, number: str | None
) -> None:
    from godoxy_streams.labels.context import replica_number

    assert replica_number(name, project, service) == number
