"""docs/labels.md: every field of a stream route, target address rules, all-or-nothing errors."""

from __future__ import annotations

import pytest

from godoxy_streams.containers import PortFact
from godoxy_streams.labels import ParseContext

from .labelkit import IP, errors, parse, routes

PORT = {"proxy.a.port": "2222:22"}


@pytest.mark.parametrize("scheme", ["tcp", "udp", "tcp4", "tcp6", "udp4", "udp6"])
def test_every_stream_scheme(scheme: str) -> None:
    (route,) = parse({**PORT, "proxy.a.scheme": scheme.upper()}).routes
    assert route.scheme == scheme and route.proto == scheme[:3]
    assert route.bind == ("::" if scheme.endswith("6") else "0.0.0.0")


def test_tcp_plus_udp_is_two_routes_on_one_port() -> None:
    assert routes({"proxy.dns.scheme": "tcp+udp", "proxy.dns.port": "5353:53"}) == [
        ("dns", "tcp", "0.0.0.0", 5353, IP, 53),
        ("dns", "udp", "0.0.0.0", 5353, IP, 53),
    ]


def test_invalid_scheme() -> None:
    (msg,) = errors({**PORT, "proxy.a.scheme": "tpc"})
    assert 'label proxy.a.scheme="tpc": expected one of tcp, udp' in msg


def test_default_scheme_is_udp_when_target_port_exposed_only_as_udp() -> None:
    assert routes({"proxy.a.port": "5353:53"}, ports=["53/udp"])[0][1] == "udp"
    assert routes({"proxy.a.port": "5353:53"}, ports=["53/udp", "53/tcp"])[0][1] == "tcp"
    assert routes({"proxy.a.port": "5353:53"})[0][1] == "tcp"


@pytest.mark.parametrize(
    ("value", "listen", "target"), [("2222:22", 2222, 22), ("22", None, 22), (":22", None, 22)]
)
def test_port_forms_with_explicit_scheme(value: str, listen: int | None, target: int) -> None:
    route = routes({"proxy.a.scheme": "tcp", "proxy.a.port": value})[0]
    assert (route[3], route[5]) == (listen, target)


@pytest.mark.parametrize("value", ["22x", "70000", "0", "1:2:3", "2222:", "abc:22"])
def test_invalid_port(value: str) -> None:
    (msg,) = errors({"proxy.ssh.scheme": "tcp", "proxy.ssh.port": value})
    assert msg == (
        f'container "web": label proxy.ssh.port="{value}": '
        "expected [LISTEN:]TARGET with ports 1-65535"
    )


def test_port_defaults_to_the_only_exposed_port() -> None:
    assert routes({"proxy.a.scheme": "tcp"}, ports=["6379/tcp"])[0][3:] == (None, IP, 6379)


def test_port_required_when_several_exposed() -> None:
    (msg,) = errors({"proxy.a.scheme": "tcp"}, ports=["1/tcp", "2/tcp"])
    assert "needs a port: the container exposes 2 ports (1, 2)" in msg


@pytest.mark.parametrize(
    ("bind", "want"),
    [("127.0.0.1", "127.0.0.1"), ("::", "::"), ("0:0::1", "::1"), ("[::1]", "::1")],
)
def test_bind(bind: str, want: str) -> None:
    assert routes({**PORT, "proxy.a.bind": bind})[0][2] == want


def test_bind_invalid_and_family_mismatch() -> None:
    assert "expected an IP address" in errors({**PORT, "proxy.a.bind": "localhost"})[0]
    msg = errors({**PORT, "proxy.a.bind": "::", "proxy.a.scheme": "tcp4"})[0]
    assert "an IPv6 bind does not fit scheme tcp4" in msg


def test_default_bind_is_operator_configurable() -> None:
    ctx = ParseContext(default_bind="127.0.0.1")
    assert parse(PORT, ctx).routes[0].bind == "127.0.0.1"


def test_host_may_be_one_of_the_containers_addresses() -> None:
    nets = {"a": "10.0.0.2", "b": "10.9.0.2"}
    assert routes({**PORT, "proxy.a.host": "10.9.0.2"}, networks=nets)[0][4] == "10.9.0.2"


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "localhost", "::1", "169.254.169.254", "fe80::1", "0.0.0.0"]
)
def test_host_never_loopback_or_link_local_from_labels(host: str) -> None:
    ctx = ParseContext(allowed_targets=("0.0.0.0/0", "::/0", "localhost"))
    (msg,) = errors({**PORT, "proxy.a.host": host}, ctx)
    assert "allowed from labels" in msg


def test_host_foreign_address_needs_allowed_targets() -> None:
    (msg,) = errors({**PORT, "proxy.a.host": "192.168.1.10"})
    assert f"expected one of the container's own addresses ({IP})" in msg
    ctx = ParseContext(allowed_targets=("192.168.1.0/24", "db.internal"))
    assert parse({**PORT, "proxy.a.host": "192.168.1.10"}, ctx).routes[0].target_host == (
        "192.168.1.10"
    )
    assert parse({**PORT, "proxy.a.host": "DB.internal"}, ctx).routes[0].target_host == (
        "db.internal"
    )
    assert "allowed_targets" in errors({**PORT, "proxy.a.host": "other.internal"}, ctx)[0]


@pytest.mark.parametrize(
    ("labels", "want"),
    [
        ({"proxy.a.proxy_protocol": "false"}, None),
        ({"proxy.a.proxy_protocol": "v1"}, "v1"),
        ({"proxy.a.proxy_protocol": "V2"}, "v2"),
        ({"proxy.a.relay_proxy_protocol_header": "true"}, "v2"),
        ({"proxy.a.relay_proxy_protocol_header": "false"}, None),
    ],
)
def test_proxy_protocol(labels: dict[str, str], want: str | None) -> None:
    assert parse({**PORT, **labels}).routes[0].proxy_protocol == want


def test_proxy_protocol_errors() -> None:
    assert "expected false, v1 or v2" in errors({**PORT, "proxy.a.proxy_protocol": "v3"})[0]
    for scheme in ("udp", "udp4", "tcp+udp"):
        labels = {**PORT, "proxy.a.scheme": scheme, "proxy.a.proxy_protocol": "v1"}
        assert "TCP routes only" in errors(labels)[0]


def test_acl_lists_yaml_or_comma_separated() -> None:
    labels = {
        **PORT,
        "proxy.a.acl.allow": "10.0.0.1, 192.168.0.0/16 ::1",
        "proxy.a.acl.deny": "[10.0.0.0/8]",
    }
    route = parse(labels).routes[0]
    assert route.acl_allow == ("10.0.0.1/32", "192.168.0.0/16", "::1/128")
    assert route.acl_deny == ("10.0.0.0/8",)
    route = parse({**PORT, "proxy.a.acl": "allow:\n  - 10.1.0.0/16\n  - fd00::/8"}).routes[0]
    assert route.acl_allow == ("10.1.0.0/16", "fd00::/8")


def test_acl_invalid_entry() -> None:
    (msg,) = errors({**PORT, "proxy.a.acl.deny": "10.0.0.0/8, bogus"})
    assert "'bogus' is not an IP address or CIDR" in msg


def test_limits_and_timeouts() -> None:
    labels = {
        "proxy.a.scheme": "tcp+udp",
        "proxy.a.port": "53:53",
        "proxy.a.max_connections": "7",
        "proxy.a.max_sessions": "9",
        "proxy.a.conn_idle_timeout": "1h",
        "proxy.a.udp_timeout": "1m30s",
        "proxy.a.on_stop": "kill",
        "proxy.a.drain_timeout": "500ms",
    }
    tcp, udp = parse(labels).routes
    assert (tcp.max_connections, tcp.conn_idle_timeout, tcp.on_stop, tcp.drain_timeout) == (
        7,
        3600.0,
        "kill",
        0.5,
    )
    assert (udp.max_sessions, udp.udp_timeout, udp.max_connections) == (9, 90.0, None)


def test_defaults() -> None:
    route = parse(PORT).routes[0]
    assert (route.max_connections, route.max_sessions, route.conn_idle_timeout) == (
        None,
        10000,
        None,
    )
    assert (route.udp_timeout, route.on_stop, route.drain_timeout) == (60.0, "drain", 5.0)
    assert (route.proxy_protocol, route.load_balance) == (None, None)
    h = route.healthcheck
    assert (h.disable, h.interval, h.timeout, h.retries, h.rise) == (False, 5.0, 5.0, 3, 2)


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("max_connections", "0", "whole number of at least 1"),
        ("max_sessions", "many", "whole number of at least 1"),
        ("conn_idle_timeout", "90", "expected a duration"),
        ("udp_timeout", "0s", "greater than zero"),
        ("on_stop", "wait", "expected one of drain, kill"),
        ("drain_timeout", "soon", "expected a duration"),
        ("healthcheck.interval", "fast", "expected a duration"),
        ("healthcheck.retries", "-1", "whole number"),
        ("healthcheck.disable", "maybe", "expected a boolean"),
        ("load_balance.mode", "random", "expected one of round_robin, least_conn, ip_hash"),
    ],
)
def test_field_errors(field: str, value: str, needle: str) -> None:
    (msg,) = errors({**PORT, f"proxy.a.{field}": value})
    assert f'label proxy.a.{field}="{value}"' in msg and needle in msg


def test_healthcheck_fields() -> None:
    labels = {
        **PORT,
        "proxy.a.healthcheck.disabled": "true",
        "proxy.a.healthcheck.interval": "2s",
        "proxy.a.healthcheck.timeout": "500ms",
        "proxy.a.healthcheck.retries": "4",
        "proxy.a.healthcheck.rise": "1",
        "proxy.a.healthcheck.send": "ping",
        "proxy.a.healthcheck.expect": "pong",
    }
    h = parse(labels).routes[0].healthcheck
    assert (h.disable, h.interval, h.timeout, h.retries, h.rise, h.send, h.expect) == (
        True,
        2.0,
        0.5,
        4,
        1,
        "ping",
        "pong",
    )


@pytest.mark.parametrize("mode", ["round_robin", "least_conn", "ip_hash", "roundrobin"])
def test_load_balance_mode(mode: str) -> None:
    assert parse({**PORT, "proxy.a.load_balance.mode": mode}).routes[0].load_balance in (
        "round_robin",
        "least_conn",
        "ip_hash",
    )


def test_errors_are_all_or_nothing_per_route_and_siblings_survive() -> None:
    labels = {
        "proxy.a.port": "1000:1",
        "proxy.a.udp_timeout": "x",
        "proxy.a.bind": "nope",
        "proxy.b.port": "2000:2",
    }
    result = parse(labels)
    assert [r.alias for r in result.routes] == ["b"]
    assert sorted(e.label or "" for e in result.errors) == ["proxy.a.bind", "proxy.a.udp_timeout"]
    assert all(e.container == "web" and e.alias == "a" for e in result.errors)


def test_error_object_shape() -> None:
    (error,) = parse({"proxy.ssh.scheme": "tcp", "proxy.ssh.port": "22x"}).errors
    assert error.as_dict() == {
        "container": "web",
        "alias": "ssh",
        "label": "proxy.ssh.port",
        "value": "22x",
        "message": "expected [LISTEN:]TARGET with ports 1-65535",
    }


def test_target_prefers_network_shared_with_godoxy_streams() -> None:
    ctx = ParseContext(own_networks=frozenset({"proxy"}))
    nets = {"app": "10.0.0.2", "proxy": "10.5.0.2"}
    assert parse(PORT, ctx, networks=nets).routes[0].target_host == "10.5.0.2"


def test_target_with_several_networks_is_sorted_and_noted() -> None:
    result = parse(PORT, networks={"zeta": "10.0.0.9", "alpha": "10.0.0.1"})
    assert result.routes[0].target_host == "10.0.0.1"
    assert any("several networks" in n and "'alpha'" in n for n in result.notes)


def test_host_network_container_targets_loopback() -> None:
    assert routes(PORT, networks={"host": ""}, network_mode="host")[0][4] == "127.0.0.1"


def test_container_without_address_is_a_route_error() -> None:
    (msg,) = errors(PORT, networks={"none": ""}, network_mode="none")
    assert "no network address" in msg


def test_remote_engine_targets_host_and_published_port() -> None:
    ctx = ParseContext(remote_host="192.0.2.7")
    facts = {"ports": [PortFact(22, "tcp", 32768)]}
    assert parse(PORT, ctx, **facts).routes[0].target == ("192.0.2.7", 32768)
    assert "not published" in errors({"proxy.a.port": "2222:23"}, ctx, **facts)[0]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90.0),
        ("1m30s", 90.0),
        ("500ms", 0.5),
        ("1h30s", 3630.0),
        ("2d", 172800.0),
        ("1w", 604800.0),
        ("1M", 2592000.0),  # GoDoxy's month; lower-case m stays minutes
        ("1m", 60.0),
        ("0", 0.0),
    ],
)
def test_durations_take_gos_units_and_godoxys(text: str, seconds: float) -> None:
    from godoxy_streams.labels.values import parse_duration

    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["30", "", "1x", "h", "1.5"])
def test_a_duration_needs_a_unit(text: str) -> None:
    from godoxy_streams.labels.values import ValueProblem, parse_duration

    with pytest.raises(ValueProblem):
        parse_duration(text)
