"""The scale benchmark's tables: one row per size, each figure the median over rounds with
[min-max] when there were several, plus the load average seen and any run that stopped early."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

Getter = Callable[[dict[str, Any]], float | None]


def _get(*path: str) -> Getter:
    def get(row: dict[str, Any]) -> float | None:
        value: Any = row
        for key in path:
            if not isinstance(value, dict) or value.get(key) is None:
                return None
            value = value[key]
        return float(value)

    return get


def _num(value: float) -> str:
    size = abs(value)
    if size >= 100:
        return f"{value:,.0f}"
    if size >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}" if size >= 0.1 or size == 0 else f"{value:.3f}"


def _cell(rows: list[dict[str, Any]], get: Getter) -> str:
    values = [v for v in (get(r) for r in rows) if v is not None]
    if not values:
        return "-"
    if len(values) == 1:
        return _num(values[0])
    middle = _num(statistics.median(values))
    return f"{middle} [{_num(min(values))}-{_num(max(values))}]"


SIM_SYNC: list[tuple[str, Getter]] = [
    ("initial sync s", _get("sync_s")),
    ("sync CPU s", _get("sync_cpu_s")),
    ("sync CPU s net of a 0-route start", _get("sync_cpu_net_s")),
    ("RSS/route KiB", _get("rss_per_route_kib")),
    ("fds/route", _get("fds_per_route")),
    ("relist, nothing changed: CPU s", _get("relist_cpu_s")),
    ("fake engine CPU during sync s", _get("engine_sync_cpu_s")),
    ("GET /metrics s", _get("metrics_s")),
    ("GET /api/routes s", _get("api_routes_s")),
]
SIM_EVENTS: list[tuple[str, Getter]] = [
    ("CPU per unrelated container ms", _get("unrelated", "mean")),
    ("CPU per labelled start ms", _get("start_cpu", "mean")),
    ("start event -> accepting p50 ms", _get("start", "p50")),
    ("p99 ms", _get("start", "p99")),
    ("kill event -> port free p50 ms", _get("stop", "p50")),
    ("CPU per removal ms", _get("stop_cpu", "mean")),
    ("burst of starts applied s", _get("burst_start_s")),
    ("its CPU s", _get("burst_start_cpu_s")),
    ("burst removed s", _get("burst_remove_s")),
    ("its CPU s", _get("burst_remove_cpu_s")),
]
REAL: list[tuple[str, Getter]] = [
    ("daemon CPU to follow N starts s", _get("follow_cpu_s")),
    ("CPU per unrelated container ms", _get("unrelated", "mean")),
    ("next route after `docker start` returns p50 ms", _get("next_after_return", "p50")),
    ("p99 ms", _get("next_after_return", "p99")),
    ("start event -> accepting p50 ms", _get("next_after_event", "p50")),
    ("last start event -> all routes up s", _get("last_start_to_all_s")),
    ("N `docker start`s took s", _get("start_all_s")),
    ("RSS/route KiB", _get("rss_per_route_kib")),
    ("fds/route", _get("fds_per_route")),
]


def render(title: str, rows: list[dict[str, Any]], columns: list[tuple[str, Getter]]) -> str:
    """A markdown table, one line per size (in the order first seen)."""
    sizes: list[int] = []
    for row in rows:
        if row["n"] not in sizes:
            sizes.append(row["n"])
    head = ["N", *(name for name, _ in columns), "load (1 min)", "rounds"]
    lines = [f"### {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    notes = []
    for n in sizes:
        mine = [r for r in rows if r["n"] == n]
        loads = [load[0] for r in mine for load in r.get("load", [])]
        load = f"{min(loads):.1f}-{max(loads):.1f}" if loads else "-"
        cells = [f"{n:,}", *(_cell(mine, get) for _, get in columns), load, str(len(mine))]
        lines.append("| " + " | ".join(cells) + " |")
        notes += [f"N={n:,}: {r['status']}" for r in mine if r.get("status") != "ok"]
    return "\n".join(lines + [""] + notes)


def notes(rows: list[dict[str, Any]]) -> str:
    """What the runs noted beside their figures (e.g. a status API call that timed out)."""
    seen = [f"N={r['n']:,}: {note}" for r in rows for note in r.get("notes", [])]
    return "\n".join(f"{seen.count(line)}x {line}" for line in dict.fromkeys(seen))
