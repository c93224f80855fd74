"""The static routes file (docs/labels.md "The static routes file")."""

from __future__ import annotations

import yaml

from godoxy_streams.labels import ParseContext, parse_static_routes

EXAMPLE = """
routes:
  ssh-proxy:
    scheme: tcp4
    bind: 0.0.0.0   # optional
    host: 10.0.0.5  # optional, default localhost
    port: 2222:22   # listening port : target port
  dns-proxy:
    scheme: udp4
    port: 5353:53
    acl:
      allow: [192.168.1.0/24]
"""


def load(text: str) -> object:
    return yaml.load(text, Loader=yaml.BaseLoader)


def test_labels_md_example() -> None:
    result = parse_static_routes(load(EXAMPLE), ParseContext())
    assert not result.errors
    ssh, dns = result.routes
    assert ssh.public_dict() == {
        "alias": "ssh-proxy",
        "scheme": "tcp4",
        "bind": "0.0.0.0",
        "listen_port": 2222,
        "target_host": "10.0.0.5",
        "target_port": 22,
        "container": "file:ssh-proxy",
        "engine": "local",
        "load_balance": None,
        "sni": [],
        "tls_termination": False,
        "tls_client_ca": None,
        "members": [
            {"alias": "ssh-proxy", "host": "10.0.0.5", "port": 22, "container": "file:ssh-proxy"}
        ],
    }
    assert (dns.scheme, dns.target_host, dns.acl_allow) == (
        "udp4",
        "127.0.0.1",
        ("192.168.1.0/24",),
    )
    assert ssh.origin.kind == "file"


def test_static_routes_may_target_loopback_and_names() -> None:
    doc = load("routes:\n  a: {scheme: tcp, port: '1:2', host: localhost}\n")
    assert parse_static_routes(doc, ParseContext()).routes[0].target_host == "localhost"


def test_static_route_errors_name_the_route() -> None:
    doc = load("routes:\n  a: {port: '1:2x'}\n  b: {port: '3'}\n  c: {scheme: tcp, prot: 1}\n")
    messages = [str(e) for e in parse_static_routes(doc, ParseContext()).errors]
    assert any('route "b"' in m and "needs a stream scheme" in m for m in messages)
    assert any("routes.c.prot" in m and 'did you mean "port"' in m for m in messages)


def test_v6_static_route_defaults_to_v6_loopback() -> None:
    doc = load("routes:\n  a: {scheme: tcp6, port: '1:2'}\n")
    route = parse_static_routes(doc, ParseContext()).routes[0]
    assert (route.bind, route.target_host) == ("::", "::1")


def test_malformed_document() -> None:
    assert parse_static_routes(load("- a\n- b\n"), ParseContext()).errors
    assert parse_static_routes(load("routes: [1, 2]\n"), ParseContext()).errors
