"""Compose projects for the Docker tests: a compose file brought up with whichever compose this
machine has (``docker compose``, else ``docker-compose`` v1) and always taken down.

A project is named ``gds-test-<hint>-<random>`` and every service carries the kit's ownership
labels, so its containers (``<project>_<service>_<n>`` or ``<project>-<service>-<n>``) are
swept like the kit's own if a run crashes. The project joins an existing network (``network``)
or gets its own default network, labelled the same way.
"""

from __future__ import annotations

import functools
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import docker
import yaml
from docker.models.containers import Container

from ..helpers import docker_unavailable
from . import kit

PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"


@functools.cache
def compose_command() -> tuple[str, ...] | None:
    """``docker compose`` when the plugin answers, else ``docker-compose``, else None."""
    for command in (("docker", "compose"), ("docker-compose",)):
        try:
            done = subprocess.run([*command, "version"], capture_output=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if done.returncode == 0:
            return command
    return None


class ComposeProject:
    """One compose project: ``up``, ``down`` (idempotent), and its containers."""

    def __init__(
        self,
        client: docker.DockerClient,
        workdir: Path,
        services: Mapping[str, Mapping[str, Any]],
        *,
        hint: str,
        network: str | None = None,
    ) -> None:
        command = compose_command()
        if command is None:
            docker_unavailable("neither `docker compose` nor `docker-compose` is installed")
        self.command = command
        self.client = client
        self.name = kit.unique_name(hint)
        document: dict[str, Any] = {
            "services": {
                name: {**service, "labels": kit.kit_labels(service.get("labels"))}
                for name, service in services.items()
            },
            "networks": {
                "default": {"external": True, "name": network}
                if network
                else {"labels": kit.kit_labels()}
            },
        }
        self.file = workdir / f"{self.name}.yml"
        self.file.write_text(yaml.safe_dump(document, sort_keys=False))

    def run(self, *args: str, timeout: float = 180) -> str:
        done = subprocess.run(
            [*self.command, "-f", str(self.file), "-p", self.name, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert done.returncode == 0, f"compose {' '.join(args)} failed:\n{done.stderr}"
        return done.stdout + done.stderr

    def up(self, *args: str) -> str:
        return self.run("up", "-d", *args)

    def down(self) -> None:
        self.run("down", "--volumes", "--remove-orphans", "--timeout", "1")

    def containers(self) -> list[Container]:
        """The project's running containers."""
        wanted = {"label": f"{PROJECT_LABEL}={self.name}"}
        return list(self.client.containers.list(filters=wanted, ignore_removed=True))
