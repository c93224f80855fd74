"""``godoxy-streams check`` with no file: the live containers of the engine."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from tests.daemon_kit import unique_namespace
from tests.docker.kit import container_ip


def test_check_reads_live_containers(run_container: Any) -> None:
    ns = unique_namespace()
    good = run_container(labels={f"{ns}.aliases": "ssh", f"{ns}.ssh.port": "2222:22"})
    run_container(labels={f"{ns}.bad.scheme": "tcp", f"{ns}.bad.port": "22x"})
    stopped = run_container(labels={f"{ns}.gone.port": "3333:3"})
    stopped.stop(timeout=1)
    result = subprocess.run(
        [sys.executable, "-m", "godoxy_streams", "check", "--json", "--namespace", ns],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, result.stderr
    doc = json.loads(result.stdout)
    assert doc["routes"] == [
        {
            "alias": "ssh",
            "scheme": "tcp",
            "bind": "0.0.0.0",
            "listen_port": 2222,
            "target_host": container_ip(good),
            "target_port": 22,
            "container": good.name,
            "engine": "local",
            "load_balance": None,
            "sni": [],
            "tls_termination": False,
            "tls_client_ca": None,
            "members": [
                {"alias": "ssh", "host": container_ip(good), "port": 22, "container": good.name}
            ],
        }
    ]
    (error,) = doc["errors"]
    assert error["label"] == f"{ns}.bad.port" and error["value"] == "22x"
