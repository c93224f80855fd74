"""The TLS fields of a route (``sni``, ``tls_termination``, ``tls_client_ca``) and GoDoxy's
shared TLS port (``tls_port``): what they make of a route, and the error each misuse gives,
naming the label and its value."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from godoxy_streams.labels import ParseContext, parse_static_routes

from .labelkit import parse

TLS_PORT = ParseContext(tls_port=443, tls_client_cas=(("corp", "/etc/godoxy/corp-ca.pem"),))


def fields(labels: dict[str, str], ctx: ParseContext | None = None) -> list[dict[str, Any]]:
    result = parse(labels, ctx)
    assert not result.errors, [str(e) for e in result.errors]
    return [
        {
            "scheme": r.scheme,
            "sni": r.sni,
            "tls_termination": r.tls_termination,
            "tls_client_ca": r.tls_client_ca,
            "key": str(r.key),
        }
        for r in result.routes
    ]


@pytest.mark.parametrize(
    ("labels", "ctx", "expected"),
    [
        (  # one name
            {"proxy.a.port": "443:443", "proxy.a.sni": "A.Example.com"},
            None,
            {"sni": ("a.example.com",), "key": "tcp/0.0.0.0:443 sni a.example.com"},
        ),
        (  # a comma list: sorted, repeats dropped
            {"proxy.a.port": "443:443", "proxy.a.sni": "b.test, *.example.com, b.test"},
            None,
            {"sni": ("*.example.com", "b.test")},
        ),
        (  # a YAML block with a list
            {"proxy.a": "port: 443:443\nsni: [db.example.com, '*']\n"},
            None,
            {"sni": ("*", "db.example.com")},
        ),
        (  # termination on an SNI route
            {
                "proxy.a.port": "443:1883",
                "proxy.a.sni": "mqtt.test",
                "proxy.a.tls_termination": "1",
            },
            None,
            {"sni": ("mqtt.test",), "tls_termination": True},
        ),
        (  # GoDoxy: a TCP route on the shared TLS port is chosen by its alias
            {"proxy.site2.port": "443:443"},
            TLS_PORT,
            {"sni": ("site2.*",), "key": "tcp/0.0.0.0:443 sni site2.*"},
        ),
        (  # an alias with dots is an exact name
            {"proxy.aliases": "db.example.test", "proxy.#1.port": "443:5432"},
            TLS_PORT,
            {"sni": ("db.example.test",)},
        ),
        (  # sni beats the alias rule on the shared port
            {"proxy.a.port": "443:443", "proxy.a.sni": "*"},
            TLS_PORT,
            {"sni": ("*",)},
        ),
        (  # termination on the shared port, with a client CA profile
            {
                "proxy.mqtt.port": "443:1883",
                "proxy.mqtt.tls_termination": "true",
                "proxy.mqtt.tls_client_ca": "corp",
            },
            TLS_PORT,
            {
                "sni": ("mqtt.*",),
                "tls_termination": True,
                "tls_client_ca": "/etc/godoxy/corp-ca.pem",
            },
        ),
        (  # another port is a plain route
            {"proxy.a.port": "8443:443"},
            TLS_PORT,
            {"sni": (), "key": "tcp/0.0.0.0:8443"},
        ),
        (  # GoDoxy's shortcut, false: nothing asked
            {"proxy.aliases": "a", "proxy.#1.port": "2222:22", "proxy.tls_terminations": "false"},
            None,
            {"sni": (), "tls_termination": False},
        ),
    ],
)
def test_tls_fields(
    labels: dict[str, str], ctx: ParseContext | None, expected: dict[str, Any]
) -> None:
    (route,) = fields(labels, ctx)
    assert {k: route[k] for k in expected} == expected


def test_tcp_and_udp_on_the_shared_port_make_an_sni_route_and_a_plain_one() -> None:
    routes = fields({"proxy.a.scheme": "tcp+udp", "proxy.a.port": "443:443"}, TLS_PORT)
    assert [(r["scheme"], r["sni"]) for r in routes] == [("tcp", ("a.*",)), ("udp", ())]


@pytest.mark.parametrize(
    ("labels", "ctx", "label", "message"),
    [
        (
            {"proxy.a.port": "443:443", "proxy.a.sni": "a..example"},
            None,
            "proxy.a.sni",
            "'a..example' is not a valid server name",
        ),
        (
            {"proxy.a.port": "443:443", "proxy.a.sni": "a.*"},
            None,
            "proxy.a.sni",
            "a wildcard must be the whole first label",
        ),
        (
            {"proxy.a.port": "443:443", "proxy.a.sni": "10.0.0.1"},
            None,
            "proxy.a.sni",
            "is an IP address",
        ),
        (
            {"proxy.a.scheme": "udp", "proxy.a.port": "443:443", "proxy.a.sni": "a.test"},
            None,
            "proxy.a.sni",
            "sni applies to TCP routes only",
        ),
        (
            {"proxy.a.scheme": "tcp", "proxy.a.port": "443", "proxy.a.sni": "a.test"},
            None,
            "proxy.a.sni",
            "an SNI route needs a LISTEN port",
        ),
        (
            {"proxy.a.port": "444:1883", "proxy.a.tls_termination": "true"},
            None,
            "proxy.a.tls_termination",
            "tls_termination applies to routes chosen by TLS server name only: set sni, or "
            "listen on the operator's shared TLS port (tls_port, not set)",
        ),
        (
            {"proxy.a.port": "444:1883", "proxy.a.tls_termination": "true"},
            TLS_PORT,
            "proxy.a.tls_termination",
            "(tls_port 443)",
        ),
        (
            {"proxy.a.scheme": "udp", "proxy.a.port": "53:53", "proxy.a.tls_termination": "on"},
            None,
            "proxy.a.tls_termination",
            "tls_termination applies to TCP routes only",
        ),
        (
            {"proxy.a.port": "443:443", "proxy.a.sni": "a.test", "proxy.a.tls_client_ca": "corp"},
            TLS_PORT,
            "proxy.a.tls_client_ca",
            "tls_client_ca needs tls_termination: true",
        ),
        (  # a label never names a host file
            {
                "proxy.a.port": "443:443",
                "proxy.a.tls_termination": "true",
                "proxy.a.tls_client_ca": "/etc/ssl/private/ca.pem",
            },
            TLS_PORT,
            "proxy.a.tls_client_ca",
            "expected one of the operator's client CA profiles (tls_client_cas: corp)",
        ),
        (
            {
                "proxy.a.port": "443:443",
                "proxy.a.sni": "a.test",
                "proxy.a.tls_termination": "1",
                "proxy.a.tls_client_ca": "other",
            },
            None,
            "proxy.a.tls_client_ca",
            "(tls_client_cas: none configured)",
        ),
        (
            {"proxy.aliases": "web!", "proxy.#1.port": "443:443"},
            TLS_PORT,
            "proxy.#1.port",
            "the alias 'web!' is no TLS server name",
        ),
    ],
)
def test_tls_field_errors(
    labels: dict[str, str], ctx: ParseContext | None, label: str, message: str
) -> None:
    result = parse(labels, ctx)
    assert result.routes == ()
    (error,) = result.errors
    assert error.label == label and error.value
    assert message in error.message


def test_a_bad_boolean_is_one_error() -> None:
    result = parse(
        {
            "proxy.a.port": "443:443",
            "proxy.a.tls_termination": "maybe",
            "proxy.a.tls_client_ca": "x",
        },
        TLS_PORT,
    )
    (error,) = result.errors
    assert error.label == "proxy.a.tls_termination" and "expected a boolean" in error.message


@pytest.mark.parametrize(
    ("ca", "expected"),
    [("corp", "/etc/godoxy/corp-ca.pem"), ("/srv/ca/clients.pem", "/srv/ca/clients.pem")],
)
def test_the_routes_file_may_name_a_ca_file(ca: str, expected: str) -> None:
    text = f"mqtt:\n  port: 443:1883\n  tls_termination: true\n  tls_client_ca: {ca}\n"
    result = parse_static_routes(yaml.load(text, Loader=yaml.BaseLoader), TLS_PORT)
    assert not result.errors
    (route,) = result.routes
    assert (route.sni, route.tls_client_ca) == (("mqtt.*",), expected)


def test_the_routes_file_relative_ca_path_is_an_error() -> None:
    text = "routes:\n  m:\n    port: 443:1\n    tls_termination: true\n    tls_client_ca: ca.pem\n"
    result = parse_static_routes(yaml.load(text, Loader=yaml.BaseLoader), TLS_PORT)
    (error,) = result.errors
    assert "or an absolute path to a CA file" in error.message
