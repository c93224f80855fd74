"""The static routes file in GoDoxy's own layout (route names at the top level), and documents
that are neither layout."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from godoxy_streams.labels import ParseContext, ParseResult, parse_static_routes


def parse(text: str) -> ParseResult:
    return parse_static_routes(yaml.load(text, Loader=yaml.BaseLoader), ParseContext())


def test_top_level_aliases_are_routes_and_http_entries_are_notes() -> None:
    result = parse(
        "ssh:\n  scheme: tcp\n  host: 10.0.0.3\n  port: 2222:22\n"
        "web:\n  host: 10.0.0.1\n  port: 80\n"
        "site:\n  scheme: https\n  host: 10.0.0.2\n"
    )
    assert not result.errors
    assert [(r.alias, r.scheme, r.listen_port, r.target) for r in result.routes] == [
        ("ssh", "tcp", 2222, ("10.0.0.3", 22))
    ]
    assert result.notes == (
        'file:web: route "web" is not a stream route (no stream scheme and no LISTEN port): '
        "ignored",
        'file:site: route "site" is not a stream route (scheme https): ignored',
    )


def test_an_entry_without_fields_is_godoxys_default_http_route() -> None:
    result = parse("app:\n")
    assert result.routes == () and result.errors == () and len(result.notes) == 1


def test_anchor_holders_are_skipped_and_merge_keys_apply() -> None:
    result = parse(
        "x-stream: &stream\n  scheme: udp\n  host: 10.0.0.9\n"
        "dns:\n  <<: *stream\n  port: 5353:53\n"
        "dns2:\n  <<: *stream\n  port: 5354:53\n  host: 10.0.0.10\n"
    )
    assert not result.errors and not result.notes
    assert [(r.alias, r.scheme, r.target) for r in result.routes] == [
        ("dns", "udp", ("10.0.0.9", 53)),
        ("dns2", "udp", ("10.0.0.10", 53)),
    ]


def test_errors_name_the_entry_label_and_value() -> None:
    (error,) = parse("ssh:\n  scheme: tcp\n  port: 2222:22\n  prot: 22\n").errors
    assert str(error) == (
        'container "file:ssh": label ssh.prot="22": unknown field "prot"; did you mean "port"?'
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("mqtt:\n  scheme: tcp\n  port: 443:1883\n  tls_termination: true\n", "tls_termination"),
        ("api:\n  scheme: tcp\n  port: 1:2\n  agent: https://10.0.1.2:8890\n", "agent"),
        ("dns:\n  scheme: udp\n  port: 53:53\n  relay_proxy_protocol_header: true\n", "TCP"),
    ],
)
def test_stream_entries_follow_the_stream_rules(text: str, message: str) -> None:
    result = parse(text)
    assert result.routes == () and message in result.errors[0].message


@pytest.mark.parametrize(
    "text",
    [
        "just text\n",
        "- a\n- b\n",
        "ssh: 22\n",
        "ssh:\n  port: 2222:22\nother: [1, 2]\n",
        "routes: [1, 2]\n",
    ],
)
def test_a_document_that_is_neither_layout_is_an_error(text: str) -> None:
    result = parse(text)
    assert result.routes == ()
    assert [e.message[:28] for e in result.errors] == ["expected a 'routes:' mapping"]


@pytest.mark.parametrize("document", [{"routes": None}, {"routes": {}}, {"routes": ""}])
def test_an_empty_routes_mapping_is_no_routes(document: Any) -> None:
    assert parse_static_routes(document, ParseContext()) == ParseResult()
