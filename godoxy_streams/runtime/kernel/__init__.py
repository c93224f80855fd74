"""The kernel fast path: routes forwarded by nftables DNAT instead of the userspace engine."""
