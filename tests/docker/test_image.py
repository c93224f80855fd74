"""The container image, run as a user would: it recognises its own container (never routes
itself) and warns once that bridge networking hides its listeners."""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.daemon_kit import unique_namespace
from tests.helpers import docker_unavailable, eventually

ROOT = Path(__file__).resolve().parents[2]


def _source_hash() -> str:
    digest = hashlib.sha256()
    files = sorted((ROOT / "godoxy_streams").rglob("*")) + [
        ROOT / "Dockerfile",
        ROOT / "pyproject.toml",
    ]
    for path in files:
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(path.relative_to(ROOT).as_posix().encode() + path.read_bytes())
    return digest.hexdigest()[:12]


@pytest.fixture(scope="session")
def daemon_image(docker_client: Any) -> Iterator[str]:
    """The image built from this checkout (rebuilt only when the sources change)."""
    tag = f"godoxy-streams-test/daemon:{_source_hash()}"
    try:
        docker_client.images.get(tag)
    except Exception:
        env = {**os.environ, "IMAGE": tag}
        done = subprocess.run(
            ["bash", "scripts/build-image.sh"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=1200,
        )
        if done.returncode != 0:
            docker_unavailable(f"cannot build the image: {done.stderr[-2000:]}")
        for image in docker_client.images.list(name="godoxy-streams-test/daemon"):
            if tag not in image.tags:
                docker_client.images.remove(image.id, force=True)
    yield tag


def test_image_never_routes_itself_and_warns_about_bridge_mode(
    docker_client: Any, daemon_image: str, run_container: Any
) -> None:
    ns = unique_namespace()
    socket_gid = os.stat("/var/run/docker.sock").st_gid
    other = run_container(labels={f"{ns}.other.port": "7007:7"})
    me = run_container(
        image=daemon_image,
        command=["run", "--namespace", ns],
        labels={"proxy.exclude": "false", f"{ns}.self.port": "8898:8899"},
        volumes={"/var/run/docker.sock": {"bind": "/var/run/docker.sock", "mode": "ro"}},
        group_add=[str(socket_gid)],
        wait_ready=False,
    )
    logs = lambda: me.logs().decode(errors="replace")  # noqa: E731
    eventually(lambda: "route=other" in logs(), timeout=30, what="the other container routed")
    text = logs()
    assert "route=self" not in text, text
    assert text.count("runs in the default bridge network") == 1, text
    assert other.name in text


def test_image_keeps_picked_ports_in_its_state_dir_or_says_where(
    docker_client: Any, daemon_image: str, run_container: Any
) -> None:
    """The non-root user writes /var/lib/godoxy-streams; on a read-only root filesystem with
    a tmpfs /tmp it falls back to /tmp/godoxy-streams-10001 and says so once."""
    ns = unique_namespace()
    socket_gid = os.stat("/var/run/docker.sock").st_gid
    run_container(labels={f"{ns}.auto.scheme": "tcp", f"{ns}.auto.port": "7"})
    common = {
        "image": daemon_image,
        "command": ["run", "--namespace", ns],
        "volumes": {"/var/run/docker.sock": {"bind": "/var/run/docker.sock", "mode": "ro"}},
        "group_add": [str(socket_gid)],
        "wait_ready": False,
    }
    plain = run_container(**common)
    saved = lambda: plain.exec_run(["cat", "/var/lib/godoxy-streams/ports.json"])  # noqa: E731
    result = eventually(lambda: (r := saved()).exit_code == 0 and r, 30, what="ports.json")
    assert b"|auto|tcp" in result.output and b'"port":' in result.output
    locked = run_container(read_only=True, tmpfs={"/tmp": ""}, **common)
    logs = lambda: locked.logs().decode(errors="replace")  # noqa: E731
    eventually(lambda: "route=auto" in logs(), timeout=30, what="the auto route started")
    text = logs()
    assert text.count("is not writable") == 1, text
    assert "/tmp/godoxy-streams-10001/ports.json" in text, text
