"""Client ACLs: allow/deny semantics, IPv6 and IPv4-mapped clients, combining, bad entries."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from godoxy_streams.streams.acl import Acl, client_key

CASES = [
    # (allow, deny, client, allowed)
    ((), (), "203.0.113.9", True),
    ((), (), "2001:db8::1", True),
    (("10.0.0.0/8",), (), "10.20.30.40", True),
    (("10.0.0.0/8",), (), "11.0.0.1", False),
    (("10.0.0.0/8",), (), "2001:db8::1", False),  # a non-empty allow list covers both families
    ((), ("10.0.0.0/8",), "10.0.0.1", False),
    ((), ("10.0.0.0/8",), "192.168.1.1", True),
    ((), ("10.0.0.0/8",), "::1", True),
    (("10.0.0.0/8",), ("10.1.0.0/16",), "10.1.2.3", False),  # deny beats allow
    (("10.0.0.0/8",), ("10.1.0.0/16",), "10.2.0.1", True),
    (("10.1.2.3",), (), "10.1.2.3", True),
    (("10.1.2.3",), (), "10.1.2.4", False),
    (("10.1.2.3/8",), (), "10.200.0.1", True),  # host bits are ignored, as labels normalise
    (("0.0.0.0/0",), ("1.2.3.4",), "1.2.3.4", False),
    (("0.0.0.0/0",), ("1.2.3.4",), "255.255.255.255", True),
    (("0.0.0.0/0",), (), "::1", False),
    # IPv6
    (("2001:db8::/32",), (), "2001:db8:1::1", True),
    (("2001:db8::/32",), (), "2001:db9::1", False),
    (("2001:db8::/32",), ("2001:db8:bad::/48",), "2001:db8:bad::7", False),
    ((), ("::1",), "::1", False),
    ((), ("::1",), "::2", True),
    (("fe80::/10",), (), "fe80::1%eth0", True),  # scope ids are dropped
    (("::/0",), (), "2001:db8::1", True),
    (("::/0",), (), "10.0.0.1", False),
    # IPv4-mapped IPv6 clients are judged as IPv4
    (("10.0.0.0/8",), (), "::ffff:10.0.0.1", True),
    (("10.0.0.0/8",), (), "::ffff:a00:1", True),
    (("10.0.0.0/8",), (), "::ffff:11.0.0.1", False),
    ((), ("10.0.0.1",), "::ffff:10.0.0.1", False),
    (("::/0",), (), "::ffff:10.0.0.1", False),
    ((), ("::/0",), "::ffff:10.0.0.1", True),
    # ... and mapped rules are IPv4 rules
    (("::ffff:10.0.0.0/104",), (), "10.9.9.9", True),
    (("::ffff:10.0.0.0/104",), (), "::ffff:10.9.9.9", True),
    (("::ffff:10.0.0.0/104",), (), "11.0.0.1", False),
    ((), ("::ffff:192.0.2.1",), "192.0.2.1", False),
    # unparsable clients are refused unless the list is open
    (("10.0.0.0/8",), (), "not-an-ip", False),
    (("10.0.0.0/8",), (), "", False),
    ((), ("10.0.0.0/8",), "10.0.0.01", False),
]


@pytest.mark.parametrize(("allow", "deny", "client", "allowed"), CASES)
def test_acl_table(
    allow: tuple[str, ...], deny: tuple[str, ...], client: str, allowed: bool
) -> None:
    assert Acl(allow, deny).allows(client) is allowed


def test_range_edges_and_adjacent_entries() -> None:
    acl = Acl(["10.0.0.0/25", "10.0.0.128/25", "10.0.1.0/24"], ["10.0.0.128"])
    assert acl.allows("10.0.0.0") and acl.allows("10.0.0.127") and acl.allows("10.0.0.129")
    assert not acl.allows("10.0.0.128")
    assert acl.allows("10.0.1.255") and not acl.allows("10.0.2.0")
    assert not acl.allows("9.255.255.255")


def test_is_open() -> None:
    assert Acl().is_open
    assert Acl(["0.0.0.0/0", "::/0"]).is_open
    assert not Acl(["0.0.0.0/0"]).is_open
    assert not Acl(deny=["::1"]).is_open


@pytest.mark.parametrize(
    "entry", ["10.0.0.0/33", "10.0.0", "example.com", "", "fe80::1%eth0", "1.2.3.4/x", "::g"]
)
def test_invalid_entries_name_the_entry(entry: str) -> None:
    with pytest.raises(ValueError, match="invalid ACL entry") as info:
        Acl(["10.0.0.0/8", entry])
    assert repr(entry) in str(info.value)
    with pytest.raises(ValueError, match="invalid ACL entry"):
        Acl(deny=[entry])


def test_entries_are_stripped() -> None:
    assert Acl([" 10.0.0.0/8 "]).allows("10.1.1.1")


def test_combine_a_route_can_only_narrow_the_global_list() -> None:
    global_acl = Acl(["10.0.0.0/8"], ["10.66.0.0/16"])
    route_acl = Acl(["10.66.0.0/16", "10.1.0.0/16", "192.168.0.0/16"])
    acl = Acl.combine(global_acl, route_acl)
    assert acl.allows("10.1.0.1")
    assert not acl.allows("10.66.0.1")  # denied globally, whatever the route allows
    assert not acl.allows("192.168.1.1")  # allowed by the route, not globally
    assert not acl.allows("10.2.0.1")  # allowed globally, not by the route
    assert acl.parts == (global_acl, route_acl)
    assert "Acl.combine" in repr(acl)


def test_combine_with_open_lists() -> None:
    route_acl = Acl(deny=["1.2.3.4"])
    assert Acl.combine(None, None).is_open
    for acl in (Acl.combine(None, route_acl), Acl.combine(Acl(), route_acl)):
        assert not acl.allows("1.2.3.4") and acl.allows("1.2.3.5") and acl.allows("::1")
        assert acl.parts == (route_acl,)


def test_client_key() -> None:
    assert client_key("10.0.0.1") == (4, 0x0A000001)
    assert client_key("::ffff:10.0.0.1") == (4, 0x0A000001)
    assert client_key("::1") == (6, 1)
    assert client_key("bogus") is None


NETWORKS = st.one_of(
    st.ip_addresses(v=4).flatmap(
        lambda a: st.integers(0, 32).map(lambda p: str(ipaddress.ip_network((a, p), strict=False)))
    ),
    st.ip_addresses(v=6).flatmap(
        lambda a: st.integers(0, 128).map(lambda p: str(ipaddress.ip_network((a, p), strict=False)))
    ),
)


def reference(allow: list[str], deny: list[str], client: str) -> bool:
    """The semantics, spelt out naively over ipaddress objects."""
    address = ipaddress.ip_address(client)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped

    def hits(entry: str) -> bool:
        network = ipaddress.ip_network(entry)
        if isinstance(network, ipaddress.IPv6Network) and network.subnet_of(
            ipaddress.IPv6Network("::ffff:0:0/96")
        ):
            low = network.network_address.ipv4_mapped
            assert low is not None
            network = ipaddress.ip_network((low, network.prefixlen - 96))
        return address.version == network.version and address in network

    if any(hits(e) for e in deny):
        return False
    return not allow or any(hits(e) for e in allow)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(NETWORKS, max_size=5),
    st.lists(NETWORKS, max_size=5),
    st.lists(st.ip_addresses().map(str), min_size=1, max_size=5),
)
def test_acl_matches_the_naive_reference(
    allow: list[str], deny: list[str], clients: list[str]
) -> None:
    acl = Acl(allow, deny)
    # probe the rules' own edges too, where off-by-one mistakes live
    for entry in allow + deny:
        network = ipaddress.ip_network(entry)
        clients += [str(network.network_address), str(network.broadcast_address)]
    for client in clients:
        assert acl.allows(client) is reference(allow, deny, client), client


@settings(max_examples=200, deadline=None)
@given(
    st.lists(NETWORKS, max_size=3),
    st.lists(NETWORKS, max_size=3),
    st.lists(NETWORKS, max_size=3),
    st.lists(NETWORKS, max_size=3),
    st.lists(st.ip_addresses().map(str), min_size=1, max_size=5),
)
def test_combine_is_the_conjunction(
    a_allow: list[str],
    a_deny: list[str],
    b_allow: list[str],
    b_deny: list[str],
    clients: list[str],
) -> None:
    a, b = Acl(a_allow, a_deny), Acl(b_allow, b_deny)
    combined = Acl.combine(a, b)
    for client in clients:
        assert combined.allows(client) is (a.allows(client) and b.allows(client))
