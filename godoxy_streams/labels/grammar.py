"""Label key expansion: a container's labels -> per-alias field maps, with provenance.

Handles the four addressing forms (named, ``#N``/``$N``, wildcard, YAML block), GoDoxy's scalar
shortcuts, the container-level labels, and the precedence rules of labels.md. Values stay text
here; ``fields`` turns them into routes. Pure functions, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import yaml

from godoxy_streams.errors import LabelError
from godoxy_streams.labels.values import ValueProblem, parse_bool, split_list

Form = Literal["named", "index", "wildcard", "shortcut"]
FieldText = str | list[str]

SHORTCUTS = {
    "ports": "port",
    "schemes": "scheme",
    "protos": "scheme",
    "protocols": "scheme",
    "binds": "bind",
    "hosts": "host",
    "proxy_protocol_headers": "relay_proxy_protocol_header",
}
# GoDoxy's sleep/wake ("idle watcher") labels: container- or route-level, never for streams.
IDLE_WATCHER_LABELS = frozenset(
    {
        "idle_timeout",
        "wake_timeout",
        "stop_method",
        "stop_timeout",
        "stop_signal",
        "start_endpoint",
        "depends_on",
        "no_loading_page",
    }
)
IGNORED_CONTAINER_LABELS = IDLE_WATCHER_LABELS | {"agents", "tls_terminations"}
GROUPS = frozenset({"healthcheck", "acl", "load_balance"})
_INDEX = re.compile(r"^[#$](\d+)$")


@dataclass(frozen=True)
class FieldValue:
    """One candidate value for one field of one route, and the label it came from."""

    value: FieldText
    label: str
    raw: str
    form: Form
    depth: int

    @property
    def text(self) -> str:
        return self.value if isinstance(self.value, str) else ", ".join(self.value)


@dataclass
class Expansion:
    """The labels of one container, sorted into container-level facts and per-alias fields."""

    aliases: list[str] = field(default_factory=list)
    declared_aliases: bool = False
    exclude: bool = False
    network: FieldValue | None = None
    fields: dict[str, dict[str, FieldValue]] = field(default_factory=dict)
    route_errors: dict[str, list[LabelError]] = field(default_factory=dict)
    container_errors: list[LabelError] = field(default_factory=list)
    stray_errors: list[LabelError] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def normalise_name(name: str) -> str:
    """Field names are case-insensitive and ``-``/``_`` are the same."""
    return name.strip().lower().replace("-", "_")


def load_yaml_block(text: str) -> dict[str, FieldText] | None:
    """A YAML mapping of fields, flattened to dotted keys; None if the text is no mapping."""
    try:
        data = yaml.load(text.replace("\t", "  "), Loader=yaml.BaseLoader)
    except yaml.YAMLError:
        return None
    if not isinstance(data, dict):
        return None
    flat: dict[str, FieldText] = {}

    def walk(prefix: str, node: object) -> None:
        if isinstance(node, dict):
            for key, sub in node.items():
                walk(f"{prefix}{normalise_name(str(key))}.", sub)
        elif isinstance(node, list):
            flat[prefix[:-1]] = [str(item) for item in node]
        else:
            flat[prefix[:-1]] = "" if node is None else str(node)

    walk("", data)
    return flat


@dataclass
class _Addressed:
    target: str  # alias name, "*" or "#N"
    form: Form
    path: str
    label: str
    raw: str
    depth: int


def expand(
    labels: Mapping[str, str], *, namespace: str, container: str, default_alias: str
) -> Expansion:
    """Sort one container's ``namespace.*`` labels into an ``Expansion``."""
    out = Expansion()
    prefix = namespace.lower() + "."
    addressed: list[_Addressed] = []
    shortcuts: list[tuple[str, str, str]] = []  # (field, label, raw)

    def err(message: str, label: str, raw: str, alias: str | None = None) -> LabelError:
        return LabelError(message, container=container, alias=alias, label=label, value=raw)

    for key in sorted(labels):
        if not key.lower().startswith(prefix):
            continue
        raw = str(labels[key])
        rest = key[len(prefix) :]
        head, dot, path = rest.partition(".")
        name = normalise_name(head)
        if not dot:
            if name == "aliases":
                out.declared_aliases = True
                for alias in split_list(raw):
                    alias = alias.lower()
                    if alias not in out.aliases:
                        out.aliases.append(alias)
                continue
            if name == "exclude":
                try:
                    out.exclude = parse_bool(raw)
                except ValueProblem as exc:
                    out.container_errors.append(err(str(exc), key, raw))
                continue
            if name == "network":
                out.network = FieldValue(raw.strip(), key, raw, "named", 0)
                continue
            if name in SHORTCUTS:
                shortcuts.append((SHORTCUTS[name], key, raw))
                continue
            if name in IGNORED_CONTAINER_LABELS:
                out.notes.append(f"label {key} is not used by stream routes: ignored")
                continue
        form: Form
        index = _INDEX.match(head.strip())
        if head.strip() == "*":
            target, form = "*", "wildcard"
        elif index:
            target, form = f"#{index.group(1)}", "index"
        else:
            target, form = head.strip().lower(), "named"
        if not target:
            out.stray_errors.append(err("expected an alias, #N or * after the namespace", key, raw))
            continue
        addressed.append(_Addressed(target, form, path, key, raw, rest.count(".") + 1))

    declared = list(out.aliases)
    for item in addressed:
        if item.form == "named" and item.target not in out.aliases:
            out.aliases.append(item.target)
    if not out.aliases:
        out.aliases.append(default_alias.lower())

    candidates: dict[str, dict[str, list[FieldValue]]] = {a: {} for a in out.aliases}

    def add(
        alias: str, fname: str, value: FieldText, form: Form, label: str, raw: str, depth: int
    ) -> None:
        candidates.setdefault(alias, {}).setdefault(fname, []).append(
            FieldValue(value, label, raw, form, depth)
        )

    def resolve_index(item_target: str, label: str, raw: str) -> str | None:
        n = int(item_target[1:])
        if not out.declared_aliases:
            hint = f"; add {namespace}.aliases: {default_alias}" if n == 1 else ""
            out.stray_errors.append(
                err(
                    f"{item_target} needs {namespace}.aliases to number the aliases{hint}",
                    label,
                    raw,
                    alias=item_target,
                )
            )
            return None
        if not 1 <= n <= len(declared):
            out.stray_errors.append(
                err(
                    f"{item_target} is out of range: {namespace}.aliases has {len(declared)} "
                    f"alias(es), numbered from #1",
                    label,
                    raw,
                    alias=item_target,
                )
            )
            return None
        return declared[n - 1]

    for item in addressed:
        targets: list[str]
        if item.form == "wildcard":
            targets = list(out.aliases)
        elif item.form == "index":
            resolved = resolve_index(item.target, item.label, item.raw)
            if resolved is None:
                continue
            targets = [resolved]
        else:
            targets = [item.target]
        path = ".".join(normalise_name(p) for p in item.path.split(".")) if item.path else ""
        if path == "" or path in GROUPS:
            block = load_yaml_block(item.raw)
            if block is None:
                what = "fields" if path == "" else f"{path} fields"
                for alias in targets:
                    out.route_errors.setdefault(alias, []).append(
                        err(
                            f'expected a YAML mapping of {what}, e.g. "port: 2222:22"',
                            item.label,
                            item.raw,
                            alias=alias,
                        )
                    )
                continue
            for sub, value in block.items():
                fname = f"{path}.{sub}" if path else sub
                for alias in targets:
                    add(
                        alias,
                        fname,
                        value,
                        item.form,
                        f"{item.label}[{sub}]",
                        value if isinstance(value, str) else ", ".join(value),
                        item.depth,
                    )
            continue
        for alias in targets:
            add(alias, path, item.raw, item.form, item.label, item.raw, item.depth + 1)

    for fname, label, raw in shortcuts:
        items = [s.strip() for s in raw.split(",")]
        for i, value in enumerate(items, start=1):
            if value == "":
                continue
            resolved = resolve_index(f"#{i}", label, raw)
            if resolved is not None:
                add(resolved, fname, value, "shortcut", f"{label}[#{i}]", value, 0)

    for alias, fields in candidates.items():
        resolved_fields: dict[str, FieldValue] = {}
        for fname, values in fields.items():
            chosen = _choose(values, container, alias, out)
            if chosen is not None:
                resolved_fields[fname] = chosen
        out.fields[alias] = resolved_fields
    return out


def _choose(
    values: list[FieldValue], container: str, alias: str, out: Expansion
) -> FieldValue | None:
    """Precedence for one field of one route (labels.md): per-alias beats wildcard, a deeper
    (dotted) key beats a shallower (YAML block) one; a shortcut beside a full label, or a named
    and an ``#N`` label that disagree, is an error."""
    shortcut = [v for v in values if v.form == "shortcut"]
    full = [v for v in values if v.form != "shortcut"]

    def fail(message: str, culprit: FieldValue) -> None:
        out.route_errors.setdefault(alias, []).append(
            LabelError(
                message, container=container, alias=alias, label=culprit.label, value=culprit.raw
            )
        )

    if shortcut and (full or len(shortcut) > 1):
        other = (full or shortcut[1:])[0]
        fail(f"sets the same field as {other.label}; keep only one of them", shortcut[0])
        return None
    if shortcut:
        return shortcut[0]
    per_alias = [v for v in full if v.form in ("named", "index")]
    pool = per_alias or full
    forms = {v.form for v in per_alias}
    if forms == {"named", "index"} and len({_key(v) for v in per_alias}) > 1:
        named = next(v for v in per_alias if v.form == "named")
        index = next(v for v in per_alias if v.form == "index")
        fail(f"ambiguous: {index.label}={_show(index)} sets the same field to another value", named)
        return None
    top = max(v.depth for v in pool)
    best = [v for v in pool if v.depth == top]
    if len({_key(v) for v in best}) > 1:
        fail(
            f"ambiguous: {best[1].label}={_show(best[1])} sets the same field to another value",
            best[0],
        )
        return None
    return best[0]


def _key(value: FieldValue) -> str:
    return value.text.strip()


def _show(value: FieldValue) -> str:
    return '"' + value.raw + '"'
