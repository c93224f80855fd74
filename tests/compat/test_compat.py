"""The GoDoxy compatibility corpus (``corpus.py`` says what a case is): every case gives our
recorded result through ``godoxy-streams check``, and GoDoxy's documented stream examples check
clean through the installed entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from .corpus import Case, error_matches, field_value, load_cases, run_case, write_input

CASES = load_cases()
GODOXY_REPOS = ("yusing/godoxy:", "yusing/godoxy-wiki:", "yusing/goutils:")


@pytest.fixture(autouse=True)
def _no_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("GODOXY_STREAMS_"):
            monkeypatch.delenv(name)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_case(case: Case, tmp_path: Path) -> None:
    outcome = run_case(case, tmp_path)
    ours = case.ours
    assert outcome.route_lines() == sorted(ours.get("routes") or [])
    errors = outcome.report["errors"]
    expected = ours.get("errors") or []
    assert len(errors) == len(expected), errors
    for want in expected:
        assert any(error_matches(want, e) for e in errors), (want, errors)
    assert outcome.exit_code == (1 if expected else 0)
    for want in ours.get("notes") or []:
        assert any(want in note for note in outcome.report["notes"]), (want, outcome.report)
    for where, attrs in (ours.get("fields") or {}).items():
        for attr, value in attrs.items():
            assert field_value(outcome.routes, where, attr) == value, (where, attr)


def test_the_corpus_is_well_formed() -> None:
    assert len(CASES) >= 100
    assert len({c.id for c in CASES}) == len(CASES)
    for case in CASES:
        assert case.source.startswith(GODOXY_REPOS), case.id
        assert case.entry.get("godoxy"), case.id
        assert case.kind in ("labels", "routes_file", "engine"), case.id
        assert not (case.deliberate and case.gap), case.id
        assert not case.documented or not (case.ours.get("errors")), case.id
    verdicts = Counter("deliberate" if c.deliberate else "gap" if c.gap else "equal" for c in CASES)
    assert verdicts["gap"] <= 2, verdicts


DOCUMENTED = [c for c in CASES if c.documented]


@pytest.mark.parametrize("case", DOCUMENTED, ids=[c.id for c in DOCUMENTED])
def test_documented_stream_examples_check_clean(case: Case, tmp_path: Path) -> None:
    entry_point = Path(sys.executable).parent / "godoxy-streams"
    args = write_input(case, tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GODOXY_STREAMS_")}
    done = subprocess.run(
        [str(entry_point), *args], capture_output=True, text=True, timeout=60, env=env
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["errors"] == [] and report["routes"]
