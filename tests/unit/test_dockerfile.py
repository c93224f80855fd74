"""Static checks of the Dockerfile (the image itself is built and run in tests/docker)."""

from __future__ import annotations

import re
from pathlib import Path

DOCKERFILE = (Path(__file__).resolve().parents[2] / "Dockerfile").read_text()
FINAL_STAGE = DOCKERFILE.rsplit("\nFROM ", 1)[1]


def test_base_is_a_build_argument() -> None:
    assert re.search(r"^ARG BASE=", DOCKERFILE, re.M)
    assert re.findall(r"^FROM (\S+)", DOCKERFILE, re.M) == ["${BASE}", "${BASE}"]


def test_final_stage_runs_as_a_non_root_user_with_bind_capability() -> None:
    users = re.findall(r"^USER (\S+)", FINAL_STAGE, re.M)
    assert users and users[-1] not in ("root", "0")
    assert "cap_net_bind_service" in FINAL_STAGE


def test_no_compiler_in_the_final_stage() -> None:
    for tool in ("gcc", "build-essential", "clang"):
        assert not re.search(rf"apt-get install[^\n]*\b{tool}\b", FINAL_STAGE)


def test_healthcheck_label_and_entrypoint() -> None:
    assert re.search(r"^HEALTHCHECK .*\n?.*healthz", FINAL_STAGE, re.M)
    assert 'proxy.exclude="true"' in FINAL_STAGE
    assert 'ENTRYPOINT ["godoxy-streams"]' in FINAL_STAGE
