"""Label key expansion: a container's labels -> per-alias field maps, with provenance.

Handles the four addressing forms (named, ``#N``/``$N``, wildcard, YAML block), GoDoxy's scalar
shortcuts and the container-level labels, in steps: sort the labels, list the aliases, resolve
``#N``, offer each label's values to its routes, then let ``precedence`` pick one per field.
Values stay text here; ``fields`` turns them into routes. Pure functions, no I/O.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import yaml

from godoxy_streams.errors import LabelError
from godoxy_streams.labels.precedence import FieldText, FieldValue, Form, resolve_fields
from godoxy_streams.labels.result import Ignored, http_label
from godoxy_streams.labels.values import ValueProblem, parse_bool, split_list

# GoDoxy's scalar shortcuts: item i of the comma list is that field of ``#i``. The last three
# are guarded fields (an error on a stream route), so they are read, not ignored.
SHORTCUTS = {
    "ports": "port",
    "schemes": "scheme",
    "protos": "scheme",
    "protocols": "scheme",
    "binds": "bind",
    "hosts": "host",
    "proxy_protocol_headers": "relay_proxy_protocol_header",
    "agents": "agent",
    "tls_terminations": "tls_termination",
    "inbound_mtls_profiles": "inbound_mtls_profile",
}
# GoDoxy's HTTP and file-server shortcuts: one note each, never read as an alias.
HTTP_SHORTCUTS = frozenset(
    {
        "roots",
        "spas",
        "indexes",
        "no_tls_verifies",
        "response_header_timeouts",
        "max_conns_per_hosts",
        "disable_compressions",
        "ssl_server_names",
        "ssl_trusted_certificates",
        "ssl_certificates",
        "ssl_certificate_keys",
        "rule_files",
    }
)
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
CONTAINER_LABELS = ("aliases", "exclude", "network", *SHORTCUTS, *HTTP_SHORTCUTS)
GROUPS = frozenset({"healthcheck", "acl", "loadbalance"})  # squashed names
_INDEX = re.compile(r"^[#$](\d+)$")


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
    ignored: list[Ignored] = field(default_factory=list)


def normalise_name(name: str) -> str:
    """Field names are case-insensitive and ``-``/``_`` are the same."""
    return name.strip().lower().replace("-", "_")


def squash(name: str) -> str:
    """The key GoDoxy matches field names by: case-insensitive, ``_`` (and ``-``) ignored."""
    return name.lower().replace("_", "").replace("-", "")


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


@dataclass(frozen=True)
class Addressed:
    """One label addressed to routes: ``target`` is an alias, ``*`` or ``#N``; ``path`` the
    normalised dotted field ("" for a YAML block of fields)."""

    target: str
    form: Form
    path: str
    label: str
    raw: str
    depth: int


@dataclass(frozen=True)
class Shortcut:
    """A scalar shortcut (``proxy.ports: 2222:22, 5353:53``): item i is ``field`` of ``#i``."""

    field: str
    label: str
    raw: str


def _error(
    message: str, container: str, label: str, raw: str, alias: str | None = None
) -> LabelError:
    return LabelError(message, container=container, alias=alias, label=label, value=raw)


def read_container_label(
    name: str, key: str, raw: str, container: str, out: Expansion, shortcuts: list[Shortcut]
) -> bool:
    """Record a container-level label (``proxy.aliases``, ``exclude``, ``network``, a shortcut,
    a sleep/wake label); False when ``name`` is none of those. An empty value is no label."""
    if name not in CONTAINER_LABELS and name not in IDLE_WATCHER_LABELS:
        return False
    if not raw.strip():
        return True
    if name == "aliases":
        out.declared_aliases = True
        out.aliases.extend(
            a for a in dict.fromkeys(split_list(raw.lower())) if a not in out.aliases
        )
    elif name == "exclude":
        try:
            out.exclude = parse_bool(raw)
        except ValueProblem as exc:
            out.container_errors.append(_error(str(exc), container, key, raw))
    elif name == "network":
        out.network = FieldValue(raw.strip(), key, raw, "named", 0)
    elif name in SHORTCUTS:
        shortcuts.append(Shortcut(SHORTCUTS[name], key, raw))
    elif name in HTTP_SHORTCUTS:
        out.ignored.append(http_label(container, key))
        out.notes.append(out.ignored[-1].note)
    else:
        out.notes.append(
            f"{container}: label {key} (GoDoxy's sleep/wake) is not supported: ignored"
        )
    return True


def address(key: str, rest: str, raw: str) -> Addressed | None:
    """The route(s) a ``proxy.<head>[.<path>]`` label addresses; None when ``head`` is empty."""
    head, _, path = rest.partition(".")
    head = head.strip()
    index = _INDEX.match(head)
    form: Form
    if head == "*":
        target, form = "*", "wildcard"
    elif index:
        target, form = f"#{index.group(1)}", "index"
    else:
        target, form = head.lower(), "named"
    if not target:
        return None
    fields = ".".join(normalise_name(p) for p in path.split(".")) if path else ""
    return Addressed(target, form, fields, key, raw, rest.count(".") + 1)


def sort_labels(
    labels: Mapping[str, str], namespace: str, container: str, out: Expansion
) -> tuple[list[Addressed], list[Shortcut]]:
    """Step 1: container-level labels into ``out``; the rest as addressed labels and
    shortcuts, in key order."""
    prefix = namespace.lower() + "."
    addressed: list[Addressed] = []
    shortcuts: list[Shortcut] = []
    for key in sorted(labels):
        if not key.lower().startswith(prefix):
            continue
        raw = str(labels[key])
        rest = key[len(prefix) :]
        head, dot, _ = rest.partition(".")
        name = normalise_name(head)
        if not dot and read_container_label(name, key, raw, container, out, shortcuts):
            continue
        item = address(key, rest, raw)
        if item is None:
            message = "expected an alias, #N or * after the namespace"
            out.stray_errors.append(_error(message, container, key, raw))
            continue
        addressed.append(item)
    return addressed, shortcuts


def alias_list(
    declared: list[str], addressed: list[Addressed], shortcuts: list[Shortcut], default_alias: str
) -> list[str]:
    """Step 2: the declared aliases, then those only named in labels. Without declared
    aliases, the default alias is ``#1``: an alias when a label addresses ``#1`` (or a
    shortcut's first item), or when there is no other."""
    named = [i.target for i in addressed if i.form == "named" and i.target not in declared]
    aliases = list(dict.fromkeys([*declared, *named]))
    first = any(i.target == "#1" for i in addressed) or any(split_list(s.raw) for s in shortcuts)
    default = default_alias.lower()
    if not declared and (first or not aliases) and default not in aliases:
        aliases.insert(0, default)
    return aliases


@dataclass
class Indexer:
    """Step 3: ``#N`` -> the Nth declared alias, or an error for that label."""

    out: Expansion
    namespace: str
    container: str
    declared: list[str]
    default_alias: str

    def resolve(self, target: str, label: str, raw: str) -> str | None:
        n = int(target[1:])
        numbered = self.declared if self.out.declared_aliases else [self.default_alias.lower()]
        if 1 <= n <= len(numbered):
            return numbered[n - 1]
        if self.out.declared_aliases:
            message = (
                f"{target} is out of range: {self.namespace}.aliases has {len(numbered)} "
                "alias(es), numbered from #1"
            )
        else:
            message = (
                f"{target} is out of range: without {self.namespace}.aliases only #1 (the "
                f'default alias "{numbered[0]}") is numbered'
            )
        self.out.stray_errors.append(_error(message, self.container, label, raw, alias=target))
        return None


def targets_of(item: Addressed, aliases: list[str], indexer: Indexer) -> list[str]:
    """The aliases one addressed label applies to (none when its ``#N`` does not resolve)."""
    if item.form == "wildcard":
        return list(aliases)
    if item.form == "index":
        resolved = indexer.resolve(item.target, item.label, item.raw)
        return [] if resolved is None else [resolved]
    return [item.target]


class Candidates:
    """Every value offered for each field of each route, before precedence picks one."""

    def __init__(self, aliases: list[str]) -> None:
        self.by_alias: dict[str, dict[str, list[FieldValue]]] = {a: {} for a in aliases}

    def add(self, alias: str, name: str, value: FieldValue) -> None:
        """Offer ``value`` for a field; an empty value is no label at all."""
        if value.text.strip():
            self.by_alias.setdefault(alias, {}).setdefault(name, []).append(value)


def add_addressed(
    item: Addressed, targets: list[str], candidates: Candidates, container: str, out: Expansion
) -> None:
    """Step 4: a dotted label is one field; a YAML block (``proxy.app: |``, ``proxy.app.acl:
    |``) is one field per key of its mapping, one level shallower than a dotted label."""
    if item.path and squash(item.path) not in GROUPS:
        for alias in targets:
            value = FieldValue(item.raw, item.label, item.raw, item.form, item.depth + 1)
            candidates.add(alias, item.path, value)
        return
    block = load_yaml_block(item.raw) if item.raw.strip() else {}
    if block is None:
        what = f"{item.path} fields" if item.path else "fields"
        message = f'expected a YAML mapping of {what}, e.g. "port: 2222:22"'
        if item.form == "named" and not item.path:
            message += _container_label_hint(item.target)
        for alias in targets:
            error = _error(message, container, item.label, item.raw, alias=alias)
            out.route_errors.setdefault(alias, []).append(error)
        return
    for sub, text in block.items():
        name = f"{item.path}.{sub}" if item.path else sub
        raw = text if isinstance(text, str) else ", ".join(text)
        for alias in targets:
            candidates.add(
                alias, name, FieldValue(text, f"{item.label}[{sub}]", raw, item.form, item.depth)
            )


def _container_label_hint(name: str) -> str:
    close = difflib.get_close_matches(name, CONTAINER_LABELS, n=1, cutoff=0.75)
    return f"; or did you mean the container label {close[0]}?" if close else ""


def add_shortcuts(shortcuts: list[Shortcut], candidates: Candidates, indexer: Indexer) -> None:
    """Step 5: item i of a shortcut's list is a field of ``#i``; as in GoDoxy, the list is
    split on commas and white space and empty items are dropped."""
    for shortcut in shortcuts:
        for i, value in enumerate(split_list(shortcut.raw), start=1):
            resolved = indexer.resolve(f"#{i}", shortcut.label, shortcut.raw)
            if resolved is not None:
                label = f"{shortcut.label}[#{i}]"
                candidates.add(
                    resolved, shortcut.field, FieldValue(value, label, value, "shortcut", 0)
                )


def expand(
    labels: Mapping[str, str], *, namespace: str, container: str, default_alias: str
) -> Expansion:
    """Sort one container's ``namespace.*`` labels into an ``Expansion``: container-level
    labels, the alias list, every candidate value of every route field, then precedence."""
    out = Expansion()
    addressed, shortcuts = sort_labels(labels, namespace, container, out)
    declared = list(out.aliases)
    out.aliases = alias_list(declared, addressed, shortcuts, default_alias)
    indexer = Indexer(out, namespace, container, declared, default_alias)
    candidates = Candidates(out.aliases)
    for item in addressed:
        add_addressed(item, targets_of(item, out.aliases, indexer), candidates, container, out)
    add_shortcuts(shortcuts, candidates, indexer)
    for alias, fields in candidates.by_alias.items():
        out.fields[alias], errors = resolve_fields(fields, container, alias)
        if errors:
            out.route_errors.setdefault(alias, []).extend(errors)
    return out
