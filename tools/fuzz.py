"""Long fuzz runs of the properties in tests/unit/test_fuzz.py.

    python tools/fuzz.py --examples 100000 [--only proxy|labels] [--seed N]

Each property runs with at least ``--examples`` generated inputs (Hypothesis, no example
database, no deadline). Prints, per property, the inputs run, what they came to, the time
taken and the rate; exits 1 with Hypothesis' minimal failing input if a property fails.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.unit.test_fuzz import (  # noqa: E402
    CUTS,
    LABEL_CASES,
    PROXY_INPUTS,
    check_labels,
    check_proxy_decoder,
)


def run(
    name: str,
    strategy: st.SearchStrategy[Any],
    check: Callable[..., str],
    examples: int,
    run_seed: int,
) -> bool:
    outcomes: Counter[str] = Counter()

    @seed(run_seed)
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def prop(args: tuple[Any, ...]) -> None:
        outcomes[check(*args)] += 1

    started = time.perf_counter()
    try:
        prop()
    except Exception as exc:  # a failing property: Hypothesis already printed the input
        print(f"{name}: FAILED after {sum(outcomes.values())} inputs: {exc!r}")
        return False
    elapsed = time.perf_counter() - started
    total = sum(outcomes.values())
    detail = ", ".join(f"{kind} {count}" for kind, count in outcomes.most_common())
    print(f"{name}: {total} inputs in {elapsed:.1f}s ({total / elapsed:.0f}/s) - {detail}")
    return total >= examples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=100_000)
    parser.add_argument("--only", choices=["proxy", "labels"])
    parser.add_argument("--seed", type=int, default=int(time.time()))
    args = parser.parse_args()
    print(f"seed {args.seed}, {args.examples} inputs per property")
    ok = True
    if args.only in (None, "proxy"):
        inputs = st.tuples(PROXY_INPUTS, CUTS)
        ok &= run("PROXY decoder", inputs, check_proxy_decoder, args.examples, args.seed)
    if args.only in (None, "labels"):
        cases = st.tuples(LABEL_CASES)
        ok &= run("label parser", cases, check_labels, args.examples, args.seed)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
