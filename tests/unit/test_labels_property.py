"""Property: any label dict parses into routes and LabelErrors; nothing else is ever raised."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from godoxy_streams.errors import LabelError
from godoxy_streams.labels import ParseContext, parse_container, parse_static_routes

from .labelkit import container

FIELDS = [
    "port",
    "scheme",
    "bind",
    "host",
    "proxy_protocol",
    "acl.allow",
    "acl.deny",
    "udp_timeout",
    "conn_idle_timeout",
    "max_sessions",
    "on_stop",
    "healthcheck",
    "healthcheck.interval",
    "load_balance.mode",
    "relay_proxy_protocol_header",
    "Port",
    "x-y",
    "",
]
HEADS = [
    "a",
    "b",
    "*",
    "#1",
    "#2",
    "$1",
    "#0",
    "A.B",
    "",
    "aliases",
    "exclude",
    "network",
    "ports",
    "schemes",
    "binds",
]
VALUES = st.one_of(
    st.sampled_from(
        [
            "2222:22",
            "22",
            ":22",
            "tcp",
            "udp+tcp",
            "tcp+udp",
            "udp6",
            "::",
            "true",
            "v2",
            "10.0.0.0/8",
            "5s",
            "a,b",
            "port: 1:2",
            "[1, 2",
            "{",
            "- x",
            "\tport: 1:2",
            "172.17.0.5",
            "127.0.0.1",
        ]
    ),
    st.text(max_size=30),
)
KEYS = st.one_of(
    st.builds(
        lambda h, f: f"proxy.{h}" + (f".{f}" if f else ""),
        st.sampled_from(HEADS),
        st.sampled_from(FIELDS),
    ),
    st.text(max_size=20).map(lambda t: "proxy." + t),
    st.text(max_size=20),
)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(KEYS, VALUES, max_size=8))
def test_any_labels_give_routes_or_label_errors(labels: dict[str, str]) -> None:
    result = parse_container(container(labels), ParseContext())
    for error in result.errors:
        assert isinstance(error, LabelError) and error.container == "web"
        assert str(error)
    for route in result.routes:
        assert route.target_port and hash(route)


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.one_of(st.none(), st.text(max_size=10), st.integers()),
        lambda inner: st.one_of(
            st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=4)
        ),
        max_leaves=12,
    )
)
def test_any_static_document_gives_routes_or_label_errors(document: object) -> None:
    result = parse_static_routes({"routes": document}, ParseContext())
    assert all(isinstance(e, LabelError) for e in result.errors)
    result = parse_static_routes(document, ParseContext())
    assert all(isinstance(e, LabelError) for e in result.errors)
