"""Facts of the host the fast path runs on: its Docker bridge networks, and which daemon owns
the table.

``claim_table``: one daemon per host may run the fast path (two would replace each other's
table on every change). The claim is an abstract unix socket bound in the network namespace,
which every daemon with host networking shares whatever its container or pid namespace, and
which the kernel releases when its holder dies (a crashed daemon blocks nobody).

``docker_subnets``: the bridges' subnets, read from the routing table: the subnets whose hosts
answer through this host's NAT (``FastPathContext.return_networks``).

A member on a local bridge network (``docker0``, ``br-<id>``: the interfaces the table never
DNATs traffic from) sends its replies to this host, where conntrack undoes the DNAT; a member
anywhere else (a remote engine, a Swarm node, a macvlan network) would answer the client
directly with the wrong source. The routing table says which subnets sit on those bridges
without asking the engine, and says nothing when the daemon does not run in the host's
network namespace: then no route is eligible, which is the truth.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import socket
import struct
from pathlib import Path

from .routes import DEFAULT_SKIP_IFNAMES

ROUTES_FILE = Path("/proc/net/route")
CLAIM = b"\0godoxy-streams/fast-path"
BRIDGE_PATTERNS = tuple(p for p in DEFAULT_SKIP_IFNAMES if p != "lo")
RTF_UP = 0x1
RTF_GATEWAY = 0x2


def _hex_address(text: str) -> str:
    return socket.inet_ntoa(struct.pack("<I", int(text, 16)))


def parse_bridge_subnets(text: str, patterns: tuple[str, ...] = BRIDGE_PATTERNS) -> list[str]:
    """Directly attached subnets on interfaces matching ``patterns``, from the text of
    ``/proc/net/route``; unreadable lines are skipped."""
    subnets: list[str] = []
    for line in text.splitlines()[1:]:
        words = line.split()
        if len(words) < 8 or not any(fnmatch.fnmatchcase(words[0], p) for p in patterns):
            continue
        try:
            flags = int(words[3], 16)
            net = ipaddress.IPv4Network(f"{_hex_address(words[1])}/{_hex_address(words[7])}")
        except (ValueError, struct.error):
            continue
        if flags & RTF_UP and not flags & RTF_GATEWAY and str(net) not in subnets:
            subnets.append(str(net))
    return subnets


def docker_subnets(path: Path = ROUTES_FILE) -> tuple[str, ...]:
    """The subnets of this network namespace's Docker bridges (none if unreadable)."""
    try:
        return tuple(parse_bridge_subnets(path.read_text()))
    except OSError:
        return ()


class TableTaken(RuntimeError):
    """Another live daemon in this network namespace runs the fast path."""


def claim_table(name: bytes = CLAIM) -> socket.socket:
    """Hold the claim on the table (close the socket to give it up); TableTaken if another
    process holds it."""
    claim = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        claim.bind(name)
    except OSError as e:
        claim.close()
        raise TableTaken(
            "another godoxy-streams daemon in this network namespace runs the fast path"
        ) from e
    return claim
