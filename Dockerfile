# godoxy-streams container image.
#   docker build --build-arg BASE=python:3.12-slim -t godoxy-streams .
# Run it with network_mode: host so listeners appear on the host's own addresses.
ARG BASE=python:3.12-slim

FROM ${BASE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY godoxy_streams ./godoxy_streams
RUN python3 -m venv /opt/venv && /opt/venv/bin/pip install --no-cache-dir .

FROM ${BASE}
COPY --from=build /opt/venv /opt/venv
RUN useradd --system --uid 10001 --no-create-home godoxy
USER godoxy
ENV PATH=/opt/venv/bin:$PATH \
    GODOXY_STREAMS_API=127.0.0.1:8899
LABEL proxy.exclude="true"
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s \
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8899/healthz', timeout=2)"]
ENTRYPOINT ["godoxy-streams"]
CMD ["run"]
