"""Medians with min-max spread per proxy and scenario, ratios, and the JSON file."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from bench.scenarios import Metric, Scenario

Summary = dict[str, dict[str, dict[str, dict[str, float]]]]  # scenario -> proxy -> metric


def summarize(rows: list[dict[str, Any]], scenarios: list[Scenario]) -> Summary:
    out: Summary = {}
    for sc in scenarios:
        values: dict[str, dict[str, list[float]]] = {}
        for row in rows:
            if row["scenario"] != sc.name or row["status"] != "ok":
                continue
            per_metric = values.setdefault(row["proxy"], {})
            for m in sc.metrics:
                val = row["metrics"].get(m.key)
                if val is not None:
                    per_metric.setdefault(m.key, []).append(float(val))
        out[sc.name] = {
            proxy: {
                key: {
                    "median": statistics.median(vals),
                    "min": min(vals),
                    "max": max(vals),
                    "n": len(vals),
                }
                for key, vals in per_metric.items()
            }
            for proxy, per_metric in values.items()
        }
    return out


def _num(m: Metric, v: float) -> str:
    if abs(v) >= 1e6:
        return f"{v / 1e6:.2f}M"
    if abs(v) >= 1e5:
        return f"{v / 1e3:.0f}k"
    return m.fmt.format(v)


def _cell(m: Metric, entry: dict[str, float] | None, rounds: int) -> str:
    if entry is None:
        return "n/a"
    text = _num(m, entry["median"])
    if entry["n"] > 1:
        text += f" [{_num(m, entry['min'])}-{_num(m, entry['max'])}]"
    if entry["n"] < rounds:
        text += f" n={int(entry['n'])}"
    return text


def ratio_text(subject: float, ref: float) -> str:
    if ref == 0:
        return "-"
    return f"{subject / ref:.2f}x"


def render(
    summary: Summary,
    rows: list[dict[str, Any]],
    scenarios: list[Scenario],
    proxies: list[str],
    subject: str,
    refs: list[str],
    rounds: int,
    variants: Sequence[tuple[str, str]] = (),
) -> str:
    """``variants``: (proxy, a proxy it is compared with) pairs; each gets a "variant/base"
    ratio row under the subject's (e.g. ours-pool3/ours, ours-agent/direct)."""
    lines: list[str] = []
    for sc in scenarios:
        data = summary.get(sc.name, {})
        lines.append("")
        lines.append(f"== {sc.name}: {sc.title} ==")
        header = ["proxy"] + [m.short for m in sc.metrics]
        table: list[list[str]] = []
        for p in proxies:
            status = _status(rows, sc.name, p)
            if status is None:
                continue
            if p not in data:
                table.append([p, status] + [""] * (len(sc.metrics) - 1))
                continue
            table.append([p] + [_cell(m, data[p].get(m.key), rounds) for m in sc.metrics])
        pairs = [(subject, ref) for ref in refs if ref != subject]
        pairs += [pair for pair in variants if pair not in pairs]
        for a_name, b_name in pairs:
            if a_name not in data or b_name not in data:
                continue
            cells = [f"{a_name}/{b_name}"]
            for m in sc.metrics:
                a, b = data[a_name].get(m.key), data[b_name].get(m.key)
                ok = m.ratio and a is not None and b is not None
                cells.append(ratio_text(a["median"], b["median"]) if ok else "")  # type: ignore[index]
            table.append(cells)
        widths = [max(len(r[i]) for r in [header, *table]) for i in range(len(header))]
        lines.append("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip())
        for r in table:
            lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
        legend = "; ".join(
            f"{m.short} = {m.label}" + (f" ({m.better} is better)" if m.better else "")
            for m in sc.metrics
        )
        lines.append(f"   {legend}")
        for note in _notes(rows, sc.name):
            lines.append(f"   note: {note}")
    return "\n".join(lines)


def _status(rows: list[dict[str, Any]], scenario: str, proxy: str) -> str | None:
    mine = [r for r in rows if r["scenario"] == scenario and r["proxy"] == proxy]
    if not mine:
        return None
    if any(r["status"] == "ok" for r in mine):
        return "ok"
    if all(r["status"] == "skipped" for r in mine):
        return "skipped"
    return "FAILED"


def _notes(rows: list[dict[str, Any]], scenario: str) -> list[str]:
    seen: list[str] = []
    for r in rows:
        if r["scenario"] != scenario:
            continue
        note = None
        if r["status"] == "error":
            note = f"{r['proxy']} round {r['round']}: {r['error'].splitlines()[0][:160]}"
        elif r["status"] == "skipped":
            note = f"{r['proxy']}: skipped ({r['error']})"
        elif r["metrics"].get("note"):
            note = f"{r['proxy']} round {r['round']}: {r['metrics']['note']}"
        if note and note not in seen:
            seen.append(note)
    return seen
