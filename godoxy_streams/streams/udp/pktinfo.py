"""Replies from the address a datagram arrived on: on a wildcard bind, the kernel tells each
datagram's destination (``IP_PKTINFO`` / ``IPV6_PKTINFO`` ancillary data) and a reply sent
with the same data leaves from that address, so clients see the address they sent to."""

from __future__ import annotations

import socket
import struct

IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)  # Linux value; Python 3.11 lacks the name
IPV6_PKTINFO = socket.IPV6_PKTINFO
ANC_SIZE = socket.CMSG_SPACE(20)

Cmsg = list[tuple[int, int, bytes]]


def enable_pktinfo(sock: socket.socket) -> None:
    """Ask the kernel for each datagram's destination address."""
    if sock.family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
    else:
        sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)


def reply_cmsg(anc: list[tuple[int, int, bytes]]) -> tuple[Cmsg | None, str | None]:
    """From a datagram's ancillary data: the cmsg that makes replies leave from the address
    the datagram arrived on, and that address (None, None when there is none)."""
    for level, kind, data in anc:
        if level == socket.IPPROTO_IP and kind == IP_PKTINFO and len(data) >= 12:
            # in_pktinfo {ifindex, spec_dst, addr}: send with spec_dst = the header dst
            local = socket.inet_ntop(socket.AF_INET, data[8:12])
            return [(level, kind, struct.pack("=i", 0) + data[8:12] + bytes(4))], local
        if level == socket.IPPROTO_IPV6 and kind == IPV6_PKTINFO and len(data) >= 20:
            # in6_pktinfo {addr, ifindex}: the same structure selects the source
            local = socket.inet_ntop(socket.AF_INET6, data[:16])
            if local.startswith("::ffff:") and "." in local:
                local = local[7:]
            return [(level, kind, bytes(data[:20]))], local
    return None, None
