"""Candidate values and precedence: each value offered for one field of one route, with the
label it came from, and which of them wins (docs/labels.md), or which combinations are errors.
Pure functions, no I/O."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from godoxy_streams.errors import LabelError

Form = Literal["named", "index", "wildcard", "shortcut"]
FieldText = str | list[str]


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


def resolve_fields(
    fields: Mapping[str, list[FieldValue]], container: str, alias: str
) -> tuple[dict[str, FieldValue], list[LabelError]]:
    """One value per field by precedence; clashes become errors of the route."""
    chosen: dict[str, FieldValue] = {}
    errors: list[LabelError] = []
    for name, values in fields.items():
        picked = pick(values)
        if isinstance(picked, FieldValue):
            chosen[name] = picked
        else:
            message, culprit = picked
            error = LabelError(
                message, container=container, alias=alias, label=culprit.label, value=culprit.raw
            )
            errors.append(error)
    return chosen, errors


Clash = tuple[str, FieldValue]  # what is wrong, and the label to blame


def pick(values: list[FieldValue]) -> FieldValue | Clash:
    """Precedence for one field of one route (docs/labels.md): per-alias beats wildcard, a deeper
    (dotted) key beats a shallower (YAML block) one; a shortcut beside a full label, or a named
    and an ``#N`` label that disagree, is a clash."""
    shortcut = [v for v in values if v.form == "shortcut"]
    full = [v for v in values if v.form != "shortcut"]
    if shortcut and (full or len(shortcut) > 1):
        other = (full or shortcut[1:])[0]
        return f"sets the same field as {other.label}; keep only one of them", shortcut[0]
    if shortcut:
        return shortcut[0]
    per_alias = [v for v in full if v.form in ("named", "index")]
    clash = _named_index_clash(per_alias)
    return clash if clash else _deepest(per_alias or full)


def _named_index_clash(per_alias: list[FieldValue]) -> Clash | None:
    forms = {v.form for v in per_alias}
    if forms != {"named", "index"} or len({_key(v) for v in per_alias}) < 2:
        return None
    named = next(v for v in per_alias if v.form == "named")
    index = next(v for v in per_alias if v.form == "index")
    return f"ambiguous: {index.label}={_show(index)} sets the same field to another value", named


def _deepest(pool: list[FieldValue]) -> FieldValue | Clash:
    top = max(v.depth for v in pool)
    best = [v for v in pool if v.depth == top]
    if len({_key(v) for v in best}) > 1:
        message = (
            f"ambiguous: {best[1].label}={_show(best[1])} sets the same field to another value"
        )
        return message, best[0]
    return best[0]


def _key(value: FieldValue) -> str:
    return value.text.strip()


def _show(value: FieldValue) -> str:
    return '"' + value.raw + '"'
