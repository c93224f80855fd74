"""The kernel accepts every script the renderer writes: each sample table, fresh and as an
update of every other sample, checked by ``nft -c`` (nothing changes). The update form needs
the table it updates, so each check runs in a namespace of its own where the old table is
applied for real first; the host's ruleset is never touched."""

from __future__ import annotations

import json

import pytest

from godoxy_streams.runtime.kernel.nft import parse_objects, probe_table
from godoxy_streams.runtime.kernel.routes import TableObjects
from godoxy_streams.runtime.kernel.rules import defined_objects, render

from ..unit.kernelkit import SAMPLES
from . import kit

TRANSITIONS = [("empty", "mixed"), ("mixed", "limits"), ("limits", "mixed"), ("acl", "ip_hash")]


def nft(ns: kit.ClientNamespace, *args: str, script: str | None = None) -> str:
    done = ns.run(["nft", *args], script)
    assert done.returncode == 0, f"nft {' '.join(args)}: {done.stderr}\n{script or ''}"
    return done.stdout


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_every_fresh_script_checks(client_ns: kit.ClientNamespace, name: str) -> None:
    nft(client_ns, "-c", "-f", "-", script=render(SAMPLES[name]))


def test_the_probe_table_checks(client_ns: kit.ClientNamespace) -> None:
    nft(client_ns, "-c", "-f", "-", script=render(probe_table()))


def listed(ns: kit.ClientNamespace) -> TableObjects:
    return parse_objects(json.loads(nft(ns, "-j", "list", "table", "inet", "godoxy_streams")))


@pytest.mark.parametrize(("old", "new"), TRANSITIONS + [(n, n) for n in sorted(SAMPLES)])
def test_every_update_checks_and_applies(
    client_ns: kit.ClientNamespace, old: str, new: str
) -> None:
    nft(client_ns, "-f", "-", script=render(SAMPLES[old]))
    update = render(SAMPLES[new], listed(client_ns))
    nft(client_ns, "-c", "-f", "-", script=update)
    nft(client_ns, "-f", "-", script=update)
    assert listed(client_ns) == defined_objects(SAMPLES[new])  # nothing stale is left
    assert nft(client_ns, "list", "tables").count("godoxy_streams") == 1
