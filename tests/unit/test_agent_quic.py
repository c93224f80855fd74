"""The datagram channel's framing: flow numbers as QUIC variable-length integers, and the
length-prefixed records a flow's stream carries, reassembled from any split."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from godoxy_streams.agent.quic import Records, flow_prefix, record, split_datagram


@pytest.mark.parametrize(
    ("stream_id", "prefix"),
    [
        (0, b"\x00"),
        (4, b"\x01"),
        (63 * 4, b"\x3f"),
        (64 * 4, b"\x40\x40"),
        (16383 * 4, b"\x7f\xff"),
        (16384 * 4, b"\x80\x00\x40\x00"),
        ((2**30 - 1) * 4, b"\xbf\xff\xff\xff"),
        (2**30 * 4, b"\xc0\x00\x00\x00\x40\x00\x00\x00"),
    ],
)
def test_flow_numbers_are_quic_varints_of_the_quarter_stream_id(
    stream_id: int, prefix: bytes
) -> None:
    assert flow_prefix(stream_id) == prefix
    assert split_datagram(prefix + b"payload") == (stream_id, b"payload")


@given(st.integers(0, 2**60).map(lambda n: n * 4), st.binary(max_size=64))
def test_every_flow_number_round_trips(stream_id: int, payload: bytes) -> None:
    assert split_datagram(flow_prefix(stream_id) + payload) == (stream_id, payload)


@pytest.mark.parametrize("frame", [b"", b"\x40", b"\x80\x00\x01", b"\xc0" + bytes(6)])
def test_a_truncated_flow_number_is_refused(frame: bytes) -> None:
    with pytest.raises(ValueError):
        split_datagram(frame)


@given(
    st.lists(st.binary(max_size=3000), max_size=8),
    st.lists(st.integers(1, 4000), max_size=20),
)
def test_records_reassemble_from_any_split(payloads: list[bytes], cuts: list[int]) -> None:
    wire = b"".join(record(p) for p in payloads)
    records = Records()
    out: list[bytes] = []
    at = 0
    for cut in cuts:
        out += records.feed(wire[at : at + cut])
        at += cut
    out += records.feed(wire[at:])
    assert out == payloads and records.buffer == b""


def test_the_largest_udp_payload_fits_a_record() -> None:
    payload = bytes(65507)
    assert Records().feed(record(payload)) == [payload]
