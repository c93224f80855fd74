"""The Docker test kit: a tiny local echo image, container/network factories, and helpers.

The image holds one static binary, /echo (tests/docker/echo/echo.c, see its header for
flags and sub-commands), built with gcc and `docker import`ed from an in-memory tar: no
registry, no base image. Its tag is `godoxy-streams-test/echo:<hash>` where the hash
covers the sources and the build recipe, so it is rebuilt only when those change. A second
image is made the same way, `godoxy-streams-test/tls-echo` (tests/docker/tls_echo, linked
static against OpenSSL: a TLS upstream for the SNI route tests).

Everything the kit creates is named `gds-test-<hint>-<random>` and labelled
`godoxy-streams-test=1` plus the creating session's id, pid and host, so a sweep can
remove what crashed runs left behind without touching a concurrent run's objects.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import secrets
import shutil
import socket
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import docker
import docker.errors
from docker.models.containers import Container
from docker.models.networks import Network

from ..helpers import eventually, tcp_exchange, udp_exchange

LABEL = "godoxy-streams-test"
"""Label key set to "1" on every container and network the kit creates."""
SESSION_LABEL = f"{LABEL}.session"
PID_LABEL = f"{LABEL}.pid"
HOST_LABEL = f"{LABEL}.host"
NAME_PREFIX = "gds-test-"
IMAGE_REPO = "godoxy-streams-test/echo"
ECHO = "/echo"
"""Path of the echo binary inside the image (also its ENTRYPOINT)."""
HEALTH_FILE = "/tmp/healthy"
READY_LINE = b"echo: ready"
SESSION_ID = secrets.token_hex(6)
STALE_AFTER = 3600.0
"""Seconds after which another host's kit objects count as abandoned by the sweep."""

ECHO_SRC = Path(__file__).parent / "echo"
BUILD_DIR = Path(__file__).parent / ".build"  # git-ignored
CFLAGS = ("-static", "-O2", "-Wall", "-Wextra", "-s")
ROOTFS_DIRS = {"tmp": 0o1777, "etc": 0o755}

NANOSECONDS = 1_000_000_000


class KitUnavailable(RuntimeError):
    """The test image cannot be built here (no gcc, no static libc, ...)."""


# -- the images ---------------------------------------------------------------------------


@dataclass(frozen=True)
class StaticImage:
    """A scratch image holding one static binary compiled from the C files of ``src``."""

    repo: str
    src: Path
    binary: str  # its path in the image, and the ENTRYPOINT
    libs: tuple[str, ...] = ()  # static libraries to link (e.g. -lssl)
    needs: str = ""  # the package that provides them, for the error when they are missing

    @property
    def changes(self) -> tuple[str, ...]:
        return (f'ENTRYPOINT ["{self.binary}"]', "WORKDIR /")

    @property
    def recipe(self) -> str:
        parts: list[Any] = ["recipe v1", CFLAGS, self.changes, sorted(ROOTFS_DIRS.items())]
        return json.dumps(parts + ([self.libs] if self.libs else []))


ECHO_IMAGE = StaticImage(IMAGE_REPO, ECHO_SRC, ECHO)
TLS_ECHO_IMAGE = StaticImage(
    "godoxy-streams-test/tls-echo",
    Path(__file__).parent / "tls_echo",
    "/tls-echo",
    ("-lssl", "-lcrypto", "-lpthread"),
    "libssl-dev",
)
"""tests/docker/tls_echo/tls_echo.c: a TLS echo server (OpenSSL, linked static)."""


def sources_hash(image: StaticImage = ECHO_IMAGE) -> str:
    """12 hex digits of SHA-256 over the image's sources and its build recipe."""
    h = hashlib.sha256(image.recipe.encode())
    for path in sorted(image.src.iterdir()):
        if path.is_file():
            h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:12]


def image_tag(image: StaticImage = ECHO_IMAGE) -> str:
    return f"{image.repo}:{sources_hash(image)}"


def compile_echo(digest: str | None = None, image: StaticImage = ECHO_IMAGE) -> Path:
    """Compile the image's static binary into tests/docker/.build (cached by source hash)."""
    digest = digest or sources_hash(image)
    name = Path(image.binary).name
    out = BUILD_DIR / f"{name}-{digest}"
    if out.exists():
        return out
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        raise KitUnavailable(f"no C compiler (gcc) to build the {name} test server")
    for lib in ("libc", *("lib" + flag[2:] for flag in image.libs)):
        found = subprocess.run(
            [gcc, f"-print-file-name={lib}.a"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        if not os.path.isabs(found) or not os.path.exists(found):
            hint = image.needs if lib != "libc" else "libc6-dev / glibc-static"
            raise KitUnavailable(
                f"static linking is impossible: gcc finds no {lib}.a (install {hint})"
            )
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}-", dir=BUILD_DIR)
    os.close(fd)
    try:
        sources = sorted(str(p) for p in image.src.glob("*.c"))
        proc = subprocess.run(
            [gcc, *CFLAGS, "-o", tmp, *sources, *image.libs],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise KitUnavailable(f"compiling the {name} server failed:\n{proc.stderr}")
        os.replace(tmp, out)  # atomic: concurrent builders agree on the result
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out


def rootfs_tar(binary: Path, path: str = ECHO) -> bytes:
    """A root filesystem as an uncompressed tar: the binary and the few directories it needs."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, mode in ROOTFS_DIRS.items():
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, mode
            tar.addfile(info)
        data = binary.read_bytes()
        info = tarfile.TarInfo(path.lstrip("/"))
        info.mode, info.size = 0o755, len(data)
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def ensure_image(client: docker.DockerClient, image: StaticImage = ECHO_IMAGE) -> str:
    """The image's tag: reused when present, otherwise compiled and imported now."""
    digest = sources_hash(image)
    tag = f"{image.repo}:{digest}"
    try:
        client.images.get(tag)
        return tag
    except docker.errors.ImageNotFound:
        pass
    tar = rootfs_tar(compile_echo(digest, image), image.binary)
    reply = client.api.import_image_from_data(
        tar, repository=image.repo, tag=digest, changes=list(image.changes)
    )
    for line in str(reply).splitlines():  # a stream of JSON messages; errors ride in it
        if line.strip().startswith("{") and "error" in (msg := json.loads(line)):
            raise RuntimeError(f"docker import of {tag} failed: {msg['error']}")
    client.images.get(tag)  # raises if the import silently did nothing
    _remove_stale_images(client, keep=tag, repo=image.repo)
    return tag


def _remove_stale_images(client: docker.DockerClient, keep: str, repo: str = IMAGE_REPO) -> None:
    """Best effort: drop the repository's older tags that no container uses."""
    for image in client.images.list(name=repo):
        for tag in image.tags:
            if tag != keep and tag.startswith(repo + ":"):
                try:
                    client.images.remove(tag)
                except docker.errors.APIError:
                    pass  # in use, or removed concurrently


# -- naming, labels, health checks --------------------------------------------------------


def unique_name(hint: str | None = None) -> str:
    """`gds-test-<hint>-<random>`; the hint is optional."""
    suffix = secrets.token_hex(4)
    return f"{NAME_PREFIX}{hint}-{suffix}" if hint else f"{NAME_PREFIX}{suffix}"


def kit_labels(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The kit's ownership labels merged with `extra` (extra wins on clashes)."""
    return {
        LABEL: "1",
        SESSION_LABEL: SESSION_ID,
        PID_LABEL: str(os.getpid()),
        HOST_LABEL: socket.gethostname(),
        **(extra or {}),
    }


def healthcheck(
    test: Sequence[str],
    interval: float = 0.2,
    timeout: float = 2.0,
    retries: int = 1,
    start_period: float = 0.0,
) -> dict[str, Any]:
    """A docker-py healthcheck dict; durations given in seconds (docker-py wants ns)."""
    return {
        "test": list(test),
        "interval": int(interval * NANOSECONDS),
        "timeout": int(timeout * NANOSECONDS),
        "retries": retries,
        "start_period": int(start_period * NANOSECONDS),
    }


def file_healthcheck(path: str = HEALTH_FILE, **kwargs: Any) -> dict[str, Any]:
    """Healthy iff `path` exists in the container (toggle with `echo_exec(c, "touch"|"rm")`)."""
    return healthcheck(["CMD", ECHO, "check-file", path], **kwargs)


def tcp_healthcheck(port: int = 7, **kwargs: Any) -> dict[str, Any]:
    """Healthy iff the container accepts TCP on 127.0.0.1:`port`."""
    return healthcheck(["CMD", ECHO, "check", f"127.0.0.1:{port}"], **kwargs)


# -- containers ---------------------------------------------------------------------------


def network_name(network: str | Network) -> str:
    return network if isinstance(network, str) else str(network.name)


def container_ip(container: Container, network: str | Network | None = None) -> str:
    """The container's IPv4 address on `network` (default: its only network, or bridge).

    Reloads the container once if the address is not known yet.
    """
    for attempt in range(2):
        nets: dict[str, Any] = container.attrs.get("NetworkSettings", {}).get("Networks") or {}
        if network is not None:
            entry = nets.get(network_name(network))
        elif len(nets) == 1:
            entry = next(iter(nets.values()))
        else:
            entry = nets.get("bridge")
        ip = (entry or {}).get("IPAddress")
        if ip:
            return str(ip)
        if attempt == 0:
            container.reload()
    raise LookupError(
        f"container {container.name} has no IP address on {network or 'its network'} "
        f"(networks: {sorted(nets)})"
    )


def health_status(container: Container) -> str | None:
    """The current health status ("starting", "healthy", "unhealthy") or None (no check)."""
    container.reload()
    health = container.attrs.get("State", {}).get("Health")
    return None if health is None else str(health.get("Status"))


def wait_health(container: Container, status: str = "healthy", timeout: float = 15.0) -> None:
    """Wait until the container's health status is `status`."""
    eventually(
        lambda: health_status(container) == status,
        timeout,
        interval=0.1,
        what=f"container {container.name} {status}",
    )


class ContainerDied(AssertionError):
    pass


def wait_echo_ready(container: Container, timeout: float = 10.0) -> None:
    """Wait until the echo server printed its ready line (all sockets bound)."""

    def ready() -> bool:
        logs: bytes = container.logs(stdout=True, stderr=True)
        if READY_LINE in logs:
            return True
        container.reload()
        if container.status in ("exited", "dead"):
            code = container.attrs["State"].get("ExitCode")
            logs = container.logs(stdout=True, stderr=True)  # all of them, now it has exited
            raise ContainerDied(
                f"container {container.name} exited ({code}) before it was ready; "
                f"logs:\n{logs.decode(errors='replace')}"
            )
        return False

    eventually(ready, timeout, interval=0.02, what=f"echo in {container.name} ready", retry_on=())


def echo_exec(container: Container, *args: str) -> int:
    """Run `/echo ARGS...` in the container (e.g. "touch", HEALTH_FILE); its exit code."""
    result = container.exec_run([ECHO, *args])
    return int(result.exit_code)


def whoami_tcp(host: str, port: int, timeout: float = 5.0) -> str:
    """The echo server's tag over TCP."""
    return tcp_exchange(host, port, b"whoami\n", timeout).decode().rstrip("\n")


def whoami_udp(host: str, port: int, timeout: float = 1.0) -> str:
    """The echo server's tag over UDP."""
    return udp_exchange(host, port, b"whoami", timeout).decode()


class ContainerFactory:
    """Creates and starts kit containers; `cleanup()` force-removes every one of them."""

    def __init__(self, client: docker.DockerClient, image: str) -> None:
        self.client = client
        self.image = image
        self.created: list[Container] = []

    def __call__(
        self,
        labels: Mapping[str, str] | None = None,
        command: str | Sequence[str] | None = None,
        *,
        name: str | None = None,
        network: str | Network | None = None,
        healthcheck: Mapping[str, Any] | None = None,
        image: str | None = None,
        wait_ready: bool | None = None,
        ready_timeout: float = 10.0,
        **kwargs: Any,
    ) -> Container:
        """Create and start a container; returns it reloaded (its IPs are known).

        `name` is a hint: the real name is `gds-test-<name>-<random>`. `command` is the
        echo server's arguments (the image's ENTRYPOINT is /echo). `network` is a name or
        a Network. Other keyword arguments go to docker-py's `containers.create`. By
        default, for the echo image, waits until the server has bound all its sockets.
        """
        if wait_ready is None:
            wait_ready = image is None and "entrypoint" not in kwargs
        if isinstance(command, str):
            command = command.split()
        create_kwargs: dict[str, Any] = dict(kwargs)
        if network is not None:
            create_kwargs["network"] = network_name(network)
        if healthcheck is not None:
            create_kwargs["healthcheck"] = dict(healthcheck)
        container = self.client.containers.create(
            image or self.image,
            list(command) if command is not None else None,
            name=unique_name(name),
            labels=kit_labels(labels),
            detach=True,
            **create_kwargs,
        )
        self.created.append(container)
        container.start()
        if wait_ready:
            wait_echo_ready(container, ready_timeout)
        container.reload()
        return container

    def cleanup(self) -> None:
        errors: list[str] = []
        while self.created:
            container = self.created.pop()
            try:
                container.remove(force=True, v=True)
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError as e:
                if "already in progress" not in str(e):
                    errors.append(f"{container.name}: {e}")
        if errors:
            raise RuntimeError("could not remove test containers: " + "; ".join(errors))


class NetworkFactory:
    """Creates kit networks (bridge by default); `cleanup()` removes every one of them."""

    def __init__(self, client: docker.DockerClient) -> None:
        self.client = client
        self.created: list[Network] = []

    def __call__(
        self,
        name: str | None = None,
        *,
        labels: Mapping[str, str] | None = None,
        driver: str = "bridge",
        **kwargs: Any,
    ) -> Network:
        """Create a network `gds-test-<name>-<random>`; other kwargs go to networks.create."""
        network = self.client.networks.create(
            unique_name(name), driver=driver, labels=kit_labels(labels), **kwargs
        )
        self.created.append(network)
        return network

    def cleanup(self) -> None:
        errors: list[str] = []
        while self.created:
            network = self.created.pop()
            try:
                remove_network(network)
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError as e:
                errors.append(f"{network.name}: {e}")
        if errors:
            raise RuntimeError("could not remove test networks: " + "; ".join(errors))


def remove_network(network: Network) -> None:
    """Disconnect whatever is still attached (forcibly), then remove the network."""
    network.reload()
    for container_id in network.attrs.get("Containers") or {}:
        try:
            network.disconnect(container_id, force=True)
        except docker.errors.NotFound:
            pass
    network.remove()


# -- the sweep ----------------------------------------------------------------------------


def _created_at(value: str) -> float:
    """Seconds since the epoch of a Docker timestamp (nanosecond precision, Z or offset)."""
    head, _, rest = value.partition(".")
    zone = rest.lstrip("0123456789") if rest else value[19:]
    stamp = datetime.fromisoformat(head[:19] + (zone.replace("Z", "+00:00") or "+00:00"))
    return stamp.astimezone(UTC).timestamp()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def abandoned(name: str, labels: Mapping[str, str], created: str, *, own: bool) -> bool:
    """Whether a kit object may be swept: ours (when `own`), or its session is gone."""
    if not name.lstrip("/").startswith(NAME_PREFIX) or labels.get(LABEL) != "1":
        return False
    session = labels.get(SESSION_LABEL)
    if session == SESSION_ID:
        return own
    if session is None:
        return True
    if labels.get(HOST_LABEL) == socket.gethostname():
        try:
            return not _pid_alive(int(labels.get(PID_LABEL, "")))
        except ValueError:
            return True
    try:
        return time.time() - _created_at(created) > STALE_AFTER
    except ValueError:
        return False


def sweep(client: docker.DockerClient, *, own: bool = False) -> list[str]:
    """Remove abandoned kit containers, then networks; returns the removed names.

    Only objects named `gds-test-...` AND labelled `godoxy-streams-test=1` qualify; among
    them, this session's (when `own`), those of dead processes on this host, those
    without a session label, and other hosts' after STALE_AFTER seconds.
    """
    removed: list[str] = []
    # ignore_removed: another session may remove its containers while this list inspects them
    listed = client.containers.list(all=True, filters={"label": f"{LABEL}=1"}, ignore_removed=True)
    for c in listed:
        if abandoned(c.name, c.labels, c.attrs.get("Created", ""), own=own):
            try:
                c.remove(force=True, v=True)
                removed.append(c.name)
            except docker.errors.APIError:
                pass
    for n in client.networks.list(filters={"label": f"{LABEL}=1"}):
        labels = n.attrs.get("Labels") or {}
        if abandoned(str(n.name), labels, n.attrs.get("Created", ""), own=own):
            try:
                remove_network(n)
                removed.append(str(n.name))
            except docker.errors.APIError:
                pass
    return removed
