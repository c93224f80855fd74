"""``python -m tests.compat``: the corpus's size and verdicts, per GoDoxy source file."""

from __future__ import annotations

from collections import Counter

from .corpus import load_cases


def main() -> None:
    cases = load_cases()
    verdict = Counter[tuple[str, str]]()
    totals = Counter[str]()
    for case in cases:
        kind = "deliberate" if case.deliberate else "gap" if case.gap else "equal"
        verdict[(case.source, kind)] += 1
        totals[kind] += 1
    sources = sorted({c.source for c in cases})
    for source in sources:
        counts = ", ".join(f"{k} {verdict[(source, k)]}" for k in ("equal", "deliberate", "gap"))
        print(f"{source}: {counts}")
    print(
        f"{len(cases)} cases from {len(sources)} GoDoxy files: equal {totals['equal']}, "
        f"deliberate {totals['deliberate']}, gap {totals['gap']}; "
        f"{sum(c.documented for c in cases)} documented stream examples"
    )


if __name__ == "__main__":
    main()
