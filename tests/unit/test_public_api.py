"""The public API is deliberate: this pins it."""

import godoxy_streams


def test_public_names_are_pinned() -> None:
    assert "RouteSpec" in godoxy_streams.__all__
    assert godoxy_streams.__all__ == sorted(godoxy_streams.__all__)
    for name in godoxy_streams.__all__:
        assert hasattr(godoxy_streams, name)
