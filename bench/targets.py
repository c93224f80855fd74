"""The kernel fast path's targets as one table: for each pair, the ratio in each round (both
measured in the same round, minutes apart at most), then the median and min-max over rounds;
and the daemon's CPU per connection and per UDP exchange on the kernel path. The userspace
path's ratios from the same run sit under them, for comparison."""

from __future__ import annotations

import statistics
from typing import Any

# (what, scenario, metric, proxy, reference, target: at least this ratio, or None)
PAIRS: tuple[tuple[str, str, str, str, str, float | None], ...] = (
    ("new connections/s", "connrate", "conn_s", "ours-kernel", "haproxy", 2.0),
    ("UDP exchanges/s", "udp", "dgram_s", "ours-kernel", "nginx", 2.0),
    ("bulk MB/s, 1 stream", "bulk1", "mb_s", "ours-kernel", "haproxy-256k", 1.5),
    ("new connections/s", "connrate", "conn_s", "ours-kernel", "direct", 0.8),
    ("UDP exchanges/s", "udp", "dgram_s", "ours-kernel", "direct", 0.8),
    ("bulk MB/s, 1 stream", "bulk1", "mb_s", "ours-kernel", "direct", 0.8),
    ("new connections/s", "connrate", "conn_s", "ours-kernel", "ours", None),
    ("new connections/s", "connrate", "conn_s", "ours", "haproxy", None),
    ("UDP exchanges/s", "udp", "dgram_s", "ours", "nginx", None),
    ("bulk MB/s, 1 stream", "bulk1", "mb_s", "ours", "haproxy-256k", None),
)
CPU = (
    ("daemon CPU us per connection", "connrate", "cpu_us_per_conn"),
    ("daemon CPU us per UDP exchange", "udp", "cpu_us_per_exchange"),
)


def _by_round(rows: list[dict[str, Any]], scenario: str, proxy: str, key: str) -> dict[int, float]:
    return {
        r["round"]: float(r["metrics"][key])
        for r in rows
        if r["scenario"] == scenario
        and r["proxy"] == proxy
        and r["status"] == "ok"
        and r["metrics"].get(key) is not None
    }


def _spread(values: list[float], unit: str) -> str:
    text = f"{statistics.median(values):.2f}{unit}"
    if len(values) > 1:
        text += f" [{min(values):.2f}-{max(values):.2f}]"
    return text + f" n={len(values)}"


def render(rows: list[dict[str, Any]]) -> str:
    """The table, or '' when ours-kernel did not run."""
    if not any(r["proxy"] == "ours-kernel" and r["status"] == "ok" for r in rows):
        return ""
    table: list[tuple[str, str, str]] = []
    for what, scenario, key, proxy, ref, target in PAIRS:
        mine, theirs = _by_round(rows, scenario, proxy, key), _by_round(rows, scenario, ref, key)
        ratios = [mine[n] / theirs[n] for n in sorted(mine.keys() & theirs.keys()) if theirs[n]]
        if ratios:
            goal = f"  (target >= {target:g}x)" if target is not None else ""
            table.append((f"{proxy}/{ref}", what, _spread(ratios, "x") + goal))
    for what, scenario, key in CPU:
        values = list(_by_round(rows, scenario, "ours-kernel", key).values())
        if values:
            table.append(("ours-kernel", what, _spread(values, "")))
    widths = [max(len(row[i]) for row in table) for i in range(2)]
    lines = ["", "== kernel fast path: ratios per round, median [min-max] =="]
    lines += [f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c}" for a, b, c in table]
    return "\n".join(lines)
