#!/usr/bin/env bash
# The system packages the test suite needs: checked on every `make test`, installed when missing.
#
#   scripts/test-deps.sh          # silent when all are present; as root installs the missing ones
#                                 # (apt-get, noninteractive); otherwise fails with the command to run
#   scripts/test-deps.sh --list   # the package names, one a line
#
# `make test` runs it before anything else and `.ci/run` relies on it through `make test`, so a
# fresh Debian or Ubuntu machine needs nothing but a Docker engine. A test that needs a new system
# tool adds its package to PACKAGES below, with the test that uses it.
#
# Names are Debian's. Without dpkg (another distribution) the script only lists the packages and
# lets the run go on: the tests that miss a tool say which one when they skip or fail.
set -euo pipefail

PACKAGES=(
    python3-venv    # the Makefile's `python3 -m venv .venv` (Debian's python3 lacks it otherwise)
    gcc             # tests/docker/kit.py compiles the echo test server, statically linked,
    libc6-dev       #   against libc.a
    libssl-dev      # tests/docker/test_sni.py: the tls-echo upstream, linked static against OpenSSL
    debootstrap     # tests/docker/test_image.py: scripts/build-image.sh makes the base image
    chromium        # tests/docker/test_status_page.py, tests/test_status_view.py: the status
    chromium-driver #   page in a headless browser, driven through /usr/bin/chromedriver
    iproute2        # tests/docker/test_agent.py: `ip netns` for the agent in its own namespace
                    #   (and test_corpus_live.py: addresses and routes in containers' namespaces)
    docker-compose  # tests/docker/test_kept_ports.py, test_corpus_live.py: compose projects
                    #   (`docker compose` is used instead when the plugin is installed)
    prometheus      # tests/test_deploy.py: promtool checks the alert rules and dashboard queries
    nftables        # firewall tests: `nft` reads and restores the project's own table
    conntrack       # firewall tests: the connection-tracking entries of forwarded flows
    openssl         # TLS tests: certificates made and inspected with the openssl command
)

say() { printf 'test-deps: %s\n' "$*" >&2; }

if [[ ${1:-} == --list ]]; then
    printf '%s\n' "${PACKAGES[@]}"
    exit 0
fi

if ! command -v dpkg-query >/dev/null 2>&1; then
    say "no dpkg here; cannot check for: ${PACKAGES[*]} (Debian names; install the equivalents)"
    exit 0
fi

installed() {
    [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) == "install ok installed" ]]
}

missing=()
for package in "${PACKAGES[@]}"; do
    installed "$package" || missing+=("$package")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

if [[ $(id -u) -ne 0 ]]; then
    say "missing system packages: ${missing[*]}"
    say "install them with:"
    printf '    sudo apt-get install -y %s\n' "${missing[*]}" >&2
    exit 1
fi

say "installing missing system packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt_get() { apt-get -q -o DPkg::Lock::Timeout=300 "$@"; } # wait for a concurrent apt, never fail on it
apt_get update >/dev/null
apt_get install -y "${missing[@]}" >/dev/null
for package in "${missing[@]}"; do
    installed "$package" || {
        say "FATAL: $package is still not installed"
        exit 1
    }
done
say "installed: ${missing[*]}"
