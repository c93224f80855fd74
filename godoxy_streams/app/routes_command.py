"""``godoxy-streams routes``: ask a running daemon's status API and print its routes."""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

from godoxy_streams.settings import api_address


def fetch_routes(api: str, token: str | None = None, timeout: float = 5.0) -> dict[str, Any]:
    host, port = api_address(api)
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}/api/routes"
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (local API)
        document: dict[str, Any] = json.load(response)
    return document


def sni_suffix(names: Sequence[str], terminated: bool) -> str:
    """`` sni a.test,b.test`` (`` +tls`` when terminated) for a route chosen by server name."""
    if not names:
        return ""
    return " sni " + ",".join(names) + (" +tls" if terminated else "")


def render_routes(document: dict[str, Any]) -> str:
    header = (
        "ALIAS", "SCHEME", "LISTEN", "TARGET", "STATE", "PATH", "ACTIVE", "IN", "OUT", "SOURCE"
    )  # fmt: skip
    rows = [header]
    for r in document.get("routes", []):
        rows.append(
            (
                str(r["alias"]),
                str(r["scheme"]),
                f"{r['bind']}:{r['listen_port'] or '-'}"
                + sni_suffix(r.get("sni") or (), bool(r.get("tls_termination"))),
                f"{r['target_host'] or '-'}:{r['target_port']}",  # none while asleep
                str(r["state"]),
                str(r.get("path") or "-"),
                str(r["active"]),
                str(r["bytes_in"]),
                str(r["bytes_out"]),
                str(r["container"]),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
    for r in document.get("routes", []):
        if r.get("error"):
            lines.append(f"{r['state']}: {r['alias']} ({r['container']}): {r['error']}")
        members = r.get("members") or []
        if len(members) > 1 or any(m.get("state", "healthy") != "healthy" for m in members):
            lines.append(f"members of {r['alias']} ({r.get('load_balance') or 'single'}):")
            for m in members:
                line = f"  {m['host']}:{m['port']}  {m.get('state', '-')}  {m['container']}"
                if "active" in m:
                    line += f"  active {m['active']} total {m['total']}"
                if m.get("last_error"):
                    line += f"  last error: {m['last_error']}"
                lines.append(line)
    for e in document.get("errors", []):
        lines.append(
            f"invalid: container {e['container']!r} label {e['label']}={e['value']!r}: "
            f"{e['message']}"
        )
    return "\n".join(lines)


def show_routes(api: str, *, as_json: bool, token: str | None = None) -> int:
    try:
        document = fetch_routes(api, token)
    except (OSError, urllib.error.URLError, ValueError) as exc:
        print(f"godoxy-streams: no daemon answers at {api}: {exc}", file=sys.stderr)
        return 3
    print(json.dumps(document, indent=2) if as_json else render_routes(document))
    return 0
