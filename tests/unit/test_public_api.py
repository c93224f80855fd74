"""The public API is deliberate: this pins it."""

import godoxy_streams


def test_public_names_are_pinned() -> None:
    assert set(godoxy_streams.__all__) >= {
        "RouteSpec",
        "Settings",
        "TCPStream",
        "UDPStream",
        "parse_container",
        "make_plan",
        "build_desired",
        "StreamsError",
        "LabelError",
    }
    assert godoxy_streams.__all__ == sorted(godoxy_streams.__all__)
    for name in godoxy_streams.__all__:
        assert hasattr(godoxy_streams, name)
