"""The datagram channel's wire format: flow numbers as QUIC variable-length integers in
DATAGRAM frames, and the control messages of the control stream, reassembled from any split."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from godoxy_streams.agent.wire.flow_wire import (
    ANSWER,
    DATA,
    END,
    OPEN,
    ControlReader,
    ProtocolError,
    flow_prefix,
    message,
    split_datagram,
)
from godoxy_streams.agent.wire.header import HEADER_SIZE, StreamHeader


@pytest.mark.parametrize(
    ("flow", "prefix"),
    [
        (0, b"\x00"),
        (1, b"\x01"),
        (63, b"\x3f"),
        (64, b"\x40\x40"),
        (16383, b"\x7f\xff"),
        (16384, b"\x80\x00\x40\x00"),
        (2**30 - 1, b"\xbf\xff\xff\xff"),
        (2**30, b"\xc0\x00\x00\x00\x40\x00\x00\x00"),
    ],
)
def test_flow_numbers_are_quic_varints(flow: int, prefix: bytes) -> None:
    assert flow_prefix(flow) == prefix
    assert split_datagram(prefix + b"payload") == (flow, b"payload")


@given(st.integers(0, 2**62 - 1), st.binary(max_size=64))
def test_every_flow_number_round_trips(flow: int, payload: bytes) -> None:
    assert split_datagram(flow_prefix(flow) + payload) == (flow, payload)


@pytest.mark.parametrize("frame", [b"", b"\x40", b"\x80\x00\x01", b"\xc0" + bytes(6)])
def test_a_truncated_flow_number_is_refused(frame: bytes) -> None:
    with pytest.raises(ValueError):
        split_datagram(frame)


def test_message_layouts() -> None:
    header = StreamHeader("172.17.0.2", 53).encode()
    assert message(OPEN, 7, header) == b"\x01\x00\x00\x00\x07" + header
    assert message(ANSWER, 7) == b"\x02\x00\x00\x00\x07"
    assert message(END, 2**32 - 1) == b"\x03\xff\xff\xff\xff"
    assert message(DATA, 1, b"hi") == b"\x04\x00\x00\x00\x01\x00\x02hi"
    assert len(message(OPEN, 0, header)) == 5 + HEADER_SIZE


messages = st.one_of(
    st.tuples(st.just(OPEN), st.integers(0, 2**32 - 1), st.just(StreamHeader("h", 1).encode())),
    st.tuples(st.sampled_from([ANSWER, END]), st.integers(0, 2**32 - 1), st.just(b"")),
    st.tuples(st.just(DATA), st.integers(0, 2**32 - 1), st.binary(max_size=3000)),
)


@given(st.lists(messages, max_size=12), st.lists(st.integers(1, 4000), max_size=20))
def test_control_messages_reassemble_from_any_split(
    sent: list[tuple[int, int, bytes]], cuts: list[int]
) -> None:
    wire = b"".join(message(*m) for m in sent)
    reader = ControlReader()
    got: list[tuple[int, int, bytes]] = []
    at = 0
    for cut in cuts:
        got += reader.feed(wire[at : at + cut])
        at += cut
    got += reader.feed(wire[at:])
    assert got == sent and reader.buffer == b""


def test_the_largest_udp_payload_fits_a_data_message() -> None:
    payload = bytes(65507)
    assert ControlReader().feed(message(DATA, 3, payload)) == [(DATA, 3, payload)]


def test_an_unknown_message_type_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="type 9"):
        ControlReader().feed(b"\x09\x00\x00\x00\x01")
