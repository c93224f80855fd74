"""Swarm services as route sources: tasks of labelled services become containers at their
node's address, replicas share a pool identity, unlabelled services are ignored."""

from __future__ import annotations

from typing import Any

from godoxy_streams.labels import ParseContext, parse_container
from godoxy_streams.sources.swarm import tasks_as_containers

SERVICE = {
    "ID": "svc1",
    "Spec": {"Name": "web", "Labels": {"proxy.aliases": "web", "proxy.web.port": "8080:80"}},
    "Endpoint": {
        "Ports": [
            {"Protocol": "tcp", "TargetPort": 80, "PublishedPort": 30080, "PublishMode": "host"}
        ]
    },
}
PLAIN = {"ID": "svc2", "Spec": {"Name": "db", "Labels": {}}}
NODES = [
    {"ID": "n1", "Status": {"Addr": "10.0.0.1"}},
    {"ID": "n2", "Status": {"Addr": "0.0.0.0"}},
]


def task(tid: str, service: str, node: str, slot: int, state: str = "running") -> dict[str, Any]:
    return {
        "ID": tid,
        "ServiceID": service,
        "NodeID": node,
        "Slot": slot,
        "Status": {"State": state},
        "CreatedAt": "2026-11-24T10:00:00.5Z",
    }


def test_tasks_of_labelled_services_become_containers() -> None:
    tasks = [task("t1", "svc1", "n1", 1), task("t2", "svc1", "n2", 2), task("t3", "svc2", "n1", 1)]
    infos = tasks_as_containers(
        [SERVICE, PLAIN],
        tasks,
        NODES,
        engine="local:swarm",
        namespace="proxy",
        fallback_address="192.0.2.9",
    )
    assert [(i.id, i.name, i.node_address) for i in infos] == [
        ("t1", "web.1", "10.0.0.1"),
        ("t2", "web.2", "192.0.2.9"),
    ]
    first = infos[0]
    assert first.running and first.engine == "local:swarm" and first.created > 0
    assert (first.compose_project, first.compose_service) == ("swarm", "web")
    assert [(p.private, p.proto, p.public) for p in first.ports] == [(80, "tcp", 30080)]


def test_a_task_route_dials_its_node_at_the_published_port() -> None:
    (info,) = tasks_as_containers(
        [SERVICE], [task("t1", "svc1", "n1", 1)], NODES, engine="e", namespace="proxy"
    )
    result = parse_container(info, ParseContext(remote_host=info.node_address))
    (route,) = result.routes
    assert route.target == ("10.0.0.1", 30080) and route.listen_port == 8080


def test_an_unpublished_port_is_a_label_error() -> None:
    service = {**SERVICE, "Endpoint": {}}
    (info,) = tasks_as_containers(
        [service], [task("t1", "svc1", "n1", 1)], NODES, engine="e", namespace="proxy"
    )
    result = parse_container(info, ParseContext(remote_host=info.node_address))
    assert not result.routes and "not published" in result.errors[0].message


def test_a_stack_namespace_names_the_pool_and_stopped_tasks_do_not_serve() -> None:
    labels = {**SERVICE["Spec"]["Labels"], "com.docker.stack.namespace": "shop"}  # type: ignore[index]
    service = {**SERVICE, "Spec": {"Name": "shop_web", "Labels": labels}}
    (info,) = tasks_as_containers(
        [service], [task("t1", "svc1", "n1", 1, "starting")], NODES, engine="e", namespace="proxy"
    )
    assert info.compose_project == "shop" and not info.running
