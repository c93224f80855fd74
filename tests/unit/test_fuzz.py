"""Fuzz properties: the PROXY decoder raises nothing but ProxyProtocolError on any bytes in
any chunking, and the label parser turns any label dict into routes and LabelErrors.

The in-suite runs are short; ``tools/fuzz.py`` runs the same properties (the ``check_*``
functions and strategies here) with 100k+ inputs each.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from godoxy_streams.containers import ContainerInfo, PortFact
from godoxy_streams.errors import LabelError, ProxyProtocolError
from godoxy_streams.labels import ParseContext, parse_container
from godoxy_streams.streams.proxy_protocol import (
    V1_PREFIX,
    V2_SIGNATURE,
    ProxyHeaderParser,
    detect,
    encode_v1,
    encode_v2,
    encode_v2_local,
)

# --- PROXY decoder ---

_ENDPOINT = st.tuples(st.ip_addresses().map(str), st.integers(0, 65535))
_VALID_HEADERS = st.one_of(
    st.builds(encode_v1, _ENDPOINT, _ENDPOINT),
    st.builds(
        lambda s, d, p, t: encode_v2(s, d, proto=p, tlvs=t),
        _ENDPOINT,
        _ENDPOINT,
        st.sampled_from(["tcp", "udp"]),
        st.dictionaries(st.integers(0, 255), st.binary(max_size=20), max_size=3),
    ),
    st.just(encode_v2_local()),
    st.just(b"PROXY UNKNOWN\r\n"),
)
_V1_WORDS = st.sampled_from(
    [b"TCP4", b"TCP6", b"UNKNOWN", b" ", b"\r\n", b"\r", b"\n", b"1.2.3.4", b"::1", b"65535"]
)


@st.composite
def _mutated(draw: st.DrawFn) -> bytes:
    """A valid header with a few bytes flipped, inserted, deleted or cut off."""
    data = bytearray(draw(_VALID_HEADERS))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[at] = draw(st.integers(0, 255))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=4))
        elif op == "delete" and data:
            del data[at]
        elif op == "truncate":
            del data[at:]
    return bytes(data)


PROXY_INPUTS = st.one_of(
    st.binary(max_size=300),
    st.binary(max_size=300).map(lambda tail: V2_SIGNATURE + tail),
    st.lists(_V1_WORDS | st.binary(max_size=6), max_size=12).map(
        lambda words: V1_PREFIX + b" ".join(words)
    ),
    _mutated(),
    st.tuples(_VALID_HEADERS, st.binary(max_size=40)).map(lambda p: p[0] + p[1]),
)
CUTS = st.lists(st.integers(0, 400), max_size=6)


def check_proxy_decoder(data: bytes, cuts: list[int]) -> str:
    """Feed ``data`` cut at ``cuts``: only ProxyProtocolError may escape, and a decoded header
    must account for every byte. Returns "decoded v1/v2" or "rejected"."""
    edges = [0, *sorted(c for c in cuts if c <= len(data)), len(data)]
    chunks = [data[a:b] for a, b in zip(edges, edges[1:], strict=False)]
    parser = ProxyHeaderParser()
    verdict = detect(data[:16])
    try:
        for index, chunk in enumerate(chunks):
            outcome = parser.feed(chunk)
            if outcome is None:
                continue
            rest = outcome.rest + b"".join(chunks[index + 1 :])
            assert data[outcome.header_length :] == rest
            assert outcome.version in (1, 2) and verdict is True
            if outcome.version == 1:
                assert outcome.header_length <= 107
            assert (outcome.source is None) == (outcome.destination is None)
            assert all(0 <= k <= 255 for k in outcome.tlvs)
            return f"decoded v{outcome.version}"
        parser.feed_eof()
        raise AssertionError("feed_eof accepted an incomplete header")
    except ProxyProtocolError:
        return "rejected"


@settings(max_examples=400, deadline=None)
@given(PROXY_INPUTS, CUTS)
def test_proxy_decoder_raises_only_proxy_protocol_errors(data: bytes, cuts: list[int]) -> None:
    check_proxy_decoder(data, cuts)


# --- label parser ---

_HEADS = ["a", "b", "*", "#1", "#2", "$1", "#0", "A.B", "", "aliases", "exclude", "network"]
_HEADS += ["ports", "schemes", "binds", "hosts", "protos", "proxy_protocol_headers"]
_FIELDS = ["port", "scheme", "bind", "host", "proxy_protocol", "acl.allow", "acl.deny"]
_FIELDS += ["udp_timeout", "conn_idle_timeout", "max_sessions", "max_connections", "on_stop"]
_FIELDS += ["drain_timeout", "healthcheck", "healthcheck.interval", "healthcheck.send"]
_FIELDS += ["load_balance.mode", "relay_proxy_protocol_header", "Port", "x-y", "", "acl"]
_SAMPLE_VALUES = (
    "2222:22|22|:22|0:53|65536|tcp|udp|udp+tcp|tcp4|udp6|http|::|0.0.0.0|::1|true|false|v1|v2|"
    "10.0.0.0/8|fd00::/8, 10.0.0.1|5s|1m30s|-1|0|a,b|port: 1:2|a:\n  port: 22|[1, 2|{|- x|"
    "\tport: 1:2|172.17.0.5|127.0.0.1|drain|kill|round_robin|ip_hash|\x00|!!python/object:x|*a|&a"
).split("|")
_SAMPLED = st.sampled_from(_SAMPLE_VALUES)
_VALUES = st.one_of(_SAMPLED, _SAMPLED, _SAMPLED, st.text(max_size=40))
_STRUCTURED_KEYS = st.builds(
    lambda ns, h, f: f"{ns}.{h}" + (f".{f}" if f else ""),
    st.sampled_from(["proxy", "PROXY"]),
    st.sampled_from(_HEADS),
    st.sampled_from(_FIELDS),
)
_KEYS = st.one_of(
    _STRUCTURED_KEYS,
    _STRUCTURED_KEYS,
    _STRUCTURED_KEYS,
    st.text(max_size=20).map(lambda t: "proxy." + t),
    st.text(max_size=20),
)
_ROUTE_BASE = st.builds(
    lambda alias, port, scheme: {f"proxy.{alias}.port": port, f"proxy.{alias}.scheme": scheme},
    st.sampled_from(["a", "b", "db"]),
    st.sampled_from(["2222:22", "22", "0:53", ":22", "5353:53", "8080:80"]),
    st.sampled_from(["tcp", "udp", "tcp+udp", "tcp4", "udp6", "tcp6"]),
)
LABELS = st.one_of(
    st.dictionaries(_KEYS, _VALUES, max_size=8),
    st.tuples(_ROUTE_BASE, st.dictionaries(_KEYS, _VALUES, max_size=4)).map(
        lambda pair: {**pair[0], **pair[1]}
    ),
)
_CONTAINERS: list[dict[str, Any]] = [
    dict(networks={"bridge": "172.17.0.5"}, ports=(PortFact(22, "tcp"),)),
    dict(networks={"a": "10.0.0.2", "b": "10.0.1.2"}, ports=(PortFact(53, "udp", 5353),)),
    dict(networks={}, network_mode="host"),
    dict(networks={"bridge": ""}),
    dict(networks={"v6": "fd00::5"}, ports=(PortFact(80, "tcp"), PortFact(80, "udp"))),
]
_CONTEXTS = [
    ParseContext(),
    ParseContext(mode="compose"),
    ParseContext(remote_host="192.168.1.10", default_bind="::"),
    ParseContext(allowed_targets=("10.0.0.0/8", "db"), own_networks=frozenset({"a"})),
]
LABEL_CASES = st.tuples(
    LABELS, st.integers(0, len(_CONTAINERS) - 1), st.integers(0, len(_CONTEXTS) - 1)
)


def check_labels(case: tuple[dict[str, str], int, int]) -> str:
    """Parse one label dict against one container and context: nothing may raise, every
    error is a LabelError that renders. Returns what came out, for statistics."""
    labels, which, context = case
    compose = {"com.docker.compose.service": "svc"} if context == 1 else {}
    info = ContainerInfo(
        id="c0ffee", name="web", labels={**labels, **compose}, **_CONTAINERS[which]
    )
    result = parse_container(info, _CONTEXTS[context])
    for error in result.errors:
        assert isinstance(error, LabelError), error
        assert str(error) and error.as_dict()
    for route in result.routes:
        assert 0 < route.target_port <= 65535 and hash(route)
    kinds = [name for name, n in (("routes", result.routes), ("errors", result.errors)) if n]
    return "+".join(kinds) or "nothing"


@settings(max_examples=300, deadline=None)
@given(LABEL_CASES)
def test_label_parser_gives_routes_or_label_errors(case: tuple[dict[str, str], int, int]) -> None:
    check_labels(case)
