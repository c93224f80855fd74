# godoxy-streams container image: the daemon, and its read-only Docker socket filter.
#   scripts/build-image.sh     # no registry needed: local Debian base + host-built wheelhouse
#   docker build --build-arg BASE=python:3.12-slim -t godoxy-streams .   # with a registry
# Run the daemon with network_mode: host so listeners appear on the host's own addresses, and
# `socket-proxy` (same image) as the only holder of the engine's socket; compose.example.yml.
#
# The package is installed from build/wheels with --no-index when that wheelhouse is in the
# build context (made by `pip wheel . -w build/wheels` with the base's Python version), else
# from PyPI. The final image holds no compiler and no setcap: only the capability on python.
ARG BASE=python:3.12-slim

FROM ${BASE} AS build
LABEL godoxy-streams.stage=build
WORKDIR /src
COPY . .
RUN set -eu; \
    python3 -m venv /opt/venv; \
    if [ -d build/wheels ]; then \
        /opt/venv/bin/pip install --no-cache-dir --no-index --find-links build/wheels \
            godoxy-streams; \
    else \
        /opt/venv/bin/pip install --no-cache-dir .; \
    fi; \
    /opt/venv/bin/pip uninstall -y pip; \
    find /opt/venv -name __pycache__ -prune -exec rm -rf {} +; \
    /opt/venv/bin/godoxy-streams --version

FROM ${BASE}
# CAP_NET_BIND_SERVICE as a file capability on the interpreter, so the non-root user binds
# ports below 1024 (e.g. 53) under network_mode: host. setcap is removed again afterwards.
# The capability must stay in the container's bounding set: with cap_drop: [ALL], add back
# NET_BIND_SERVICE, or python cannot be executed at all (EPERM).
# nft, conntrack and iptables for the kernel fast path (fast_path: auto|nftables). They run as
# the daemon's children, which a file capability on python does not reach (exec drops it), and
# none is given to them: the fast path runs the container as root with only NET_ADMIN and
# NET_BIND_SERVICE (compose.example.yml); the default non-root user never touches the firewall.
RUN set -eu; \
    python="$(readlink -f "$(command -v python3)")"; \
    apt-get update; \
    apt-get install -y --no-install-recommends nftables conntrack iptables; \
    if ! command -v setcap >/dev/null; then \
        apt-get install -y --no-install-recommends libcap2-bin; \
    fi; \
    setcap cap_net_bind_service=+ep "$python"; \
    getcap "$python"; \
    apt-get purge -y --auto-remove libcap2-bin; \
    apt-get clean; \
    rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin; \
    useradd --uid 10001 --user-group --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin godoxy; \
    install -d -o godoxy -g godoxy -m 0750 /run/godoxy; \
    install -d -o godoxy -g godoxy -m 0770 /var/lib/godoxy-streams
# /run/godoxy: the filter socket (a named volume); /var/lib/godoxy-streams: the state_dir
# (picked listen ports, ports.json): mount a named volume there to keep them across
# re-creations of this container. Unwritable, the daemon uses /tmp/godoxy-streams-10001.
# Group-writable: with the fast path the daemon runs as root without CAP_DAC_OVERRIDE, in the
# group godoxy (user "0:10001").
COPY --from=build /opt/venv /opt/venv
USER godoxy
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    GODOXY_STREAMS_API=127.0.0.1:8899
LABEL proxy.exclude="true" \
      org.opencontainers.image.title="godoxy-streams" \
      org.opencontainers.image.description="TCP and UDP ports for Docker containers, by label"
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8899/healthz', timeout=2)"]
ENTRYPOINT ["godoxy-streams"]
CMD ["run"]
