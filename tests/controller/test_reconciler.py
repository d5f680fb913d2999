"""The reconcile loop in process: what a user sees in the store, the events and the routing
table when serving is enabled, a version is archived or added, the model is deleted, and
serving is disabled. Real registry, store, backend and workers; no HTTP."""

from __future__ import annotations

import json

import pytest

from regserve.backends.local.replicas import ReplicaSet
from regserve.errors import InvalidParameterError, NotFoundError
from regserve.states import EndpointState, VersionState
from regserve.store import ClusterConfig
from regserve.traffic import TrafficRoute, TrafficSplit
from tests.support.processes import alive
from tests.support.timing import eventually

from .conftest import Registry, Served

ROW = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
BODY = json.dumps({"dataframe_records": [ROW]}).encode()


async def test_enabling_serves_the_ready_versions_and_says_so(
    served: Served, registry: Registry
) -> None:
    registry.register("ctl-enable")
    await served.controller.enable("ctl-enable", actor="alice")
    await eventually(
        lambda: served.version_state("ctl-enable", "1") is VersionState.READY, "v1 READY"
    )
    # the state is stored before its event is written
    await eventually(lambda: "VERSION_READY" in served.event_types("ctl-enable"), "the event")
    assert served.event_types("ctl-enable") == [
        "SERVING_ENABLED",
        "CLUSTER_STARTING",
        "CLUSTER_STARTED",
        "WORKER_ISOLATION_OFF",
        "VERSION_DEPLOYING",
        "WORKER_STARTING",
        "WARM_PROCESS_STARTED",
        "VERSION_READY",
    ]
    enabled = served.store.list_events("ctl-enable")[0]
    assert (enabled.message, enabled.principal) == (
        "Serving enabled for model 'ctl-enable' by 'alice'.",
        "alice",
    )
    # the endpoint's status follows its versions' (written after the version's event)
    await eventually(lambda: _endpoint_state(served, "ctl-enable") is EndpointState.READY, "READY")
    endpoint = served.store.get_endpoint("ctl-enable")
    assert endpoint is not None
    assert endpoint.actual_config == ClusterConfig("local-default")
    await eventually(lambda: served.routed_ready("ctl-enable", "1"), "v1 routed")
    version = served.router.resolve("ctl-enable", "1")
    assert version.ready
    assert version.target is not None
    status, _, body = await version.target.request("application/json", BODY, 30)
    assert (status, json.loads(body)) == (200, {"predictions": [0]})


def _endpoint_state(served: Served, name: str) -> EndpointState | None:
    endpoint = served.store.get_endpoint(name)
    return None if endpoint is None else endpoint.state


async def test_an_archived_version_goes_and_a_new_one_comes(
    served: Served, registry: Registry
) -> None:
    registry.register("ctl-move")
    await served.controller.enable("ctl-move")
    await eventually(lambda: served.routed_ready("ctl-move", "1"), "v1 routed")
    old = served.router.resolve("ctl-move", "1").target
    registry.register("ctl-move")
    registry.archive("ctl-move", "1")
    await served.controller.reconcile("ctl-move")  # what the next poll (or a webhook) does
    await eventually(lambda: served.version_state("ctl-move", "2") is VersionState.READY, "v2")
    assert served.version_state("ctl-move", "1") is None
    removed = [e for e in served.store.list_events("ctl-move") if e.event_type == "VERSION_REMOVED"]
    assert [(e.version, e.message) for e in removed] == [
        ("1", "Version 1 removed: it was archived.")
    ]
    routes = served.router.get("ctl-move")
    assert routes is not None
    assert set(routes.versions) == {"2"}
    assert isinstance(old, ReplicaSet)
    assert old.pids() == []  # its worker stopped


async def test_disabling_stops_the_workers_and_withdraws_the_routes(
    served: Served, registry: Registry
) -> None:
    registry.register("ctl-disable")
    await served.controller.enable("ctl-disable")
    await eventually(
        lambda: served.version_state("ctl-disable", "1") is VersionState.READY, "v1 READY"
    )
    pid = served.store.list_versions("ctl-disable")[0].extra.get("worker_pid")
    assert isinstance(pid, int)
    assert alive(pid)
    await served.controller.disable("ctl-disable", actor="bob")
    assert served.router.get("ctl-disable") is None
    assert served.store.list_versions("ctl-disable") == []
    assert served.event_types("ctl-disable")[-2:] == ["SERVING_DISABLED", "CLUSTER_TERMINATED"]
    await eventually(lambda: not alive(pid), "the worker stopped", timeout=30)
    with pytest.raises(InvalidParameterError, match="Serving is not enabled"):
        await served.controller.disable("ctl-disable")


async def test_a_model_deleted_from_the_registry_stops_being_served(
    served: Served, registry: Registry
) -> None:
    registry.register("ctl-gone")
    await served.controller.enable("ctl-gone")
    await eventually(lambda: served.version_state("ctl-gone", "1") is VersionState.READY, "v1")
    registry.client.delete_registered_model("ctl-gone")
    await served.controller.reconcile("ctl-gone")
    endpoint = served.store.get_endpoint("ctl-gone")
    assert endpoint is not None
    assert not endpoint.enabled
    disabled = [
        e for e in served.store.list_events("ctl-gone") if e.event_type == "SERVING_DISABLED"
    ]
    assert [e.message for e in disabled] == [
        "Serving disabled: registered model 'ctl-gone' no longer exists (it was deleted or "
        "renamed)."
    ]
    assert served.router.get("ctl-gone") is None


async def test_requests_the_controller_refuses(served: Served, registry: Registry) -> None:
    with pytest.raises(NotFoundError, match="'ctl-missing' does not exist"):
        await served.controller.enable("ctl-missing")
    with pytest.raises(InvalidParameterError, match="Serving is not enabled"):
        await served.controller.update_config("ctl-missing", ClusterConfig("local-default"))
    with pytest.raises(InvalidParameterError, match="Unknown node_type_id 'huge'"):
        await served.controller.update_config("ctl-missing", ClusterConfig("huge"))
    assert served.store.list_endpoints() == []


async def test_a_traffic_config_reaches_the_routes_with_its_events(
    served: Served, registry: Registry
) -> None:
    name = "ctl-traffic"
    split = TrafficSplit((TrafficRoute("1", 50), TrafficRoute("7", 50)))
    with pytest.raises(InvalidParameterError, match="Serving is not enabled"):
        await served.controller.update_traffic(name, split)
    registry.register(name)
    await served.controller.enable(name)
    await eventually(lambda: served.routed_ready(name, "1"), "v1 routed")
    with pytest.raises(InvalidParameterError, match="add up to 50"):
        await served.controller.update_traffic(name, TrafficSplit((TrafficRoute("1", 50),)))
    await served.controller.update_traffic(name, split, actor="alice")
    routes = served.router.get(name)
    assert routes is not None
    assert routes.traffic == split
    assert routes.draw(0.99)[1].version == "1"  # version 7 does not exist: 1 takes it all
    events = [e for e in served.store.list_events(name) if e.event_type.startswith("TRAFFIC_")]
    assert [(e.event_type, e.principal) for e in events] == [
        ("TRAFFIC_CONFIG_UPDATED", "alice"),
        ("TRAFFIC_REF_UNAVAILABLE", None),
    ]
    assert "Ref '7' takes no traffic (its 50% goes to the other routes)" in events[1].message
    await served.controller.reconcile(name)  # another pass: no second event
    assert served.event_types(name).count("TRAFFIC_REF_UNAVAILABLE") == 1
    await served.controller.update_traffic(name, TrafficSplit())  # back to the default
    routes = served.router.get(name)
    assert routes is not None
    assert routes.traffic is None
    endpoint = served.store.get_endpoint(name)
    assert endpoint is not None
    assert endpoint.traffic is None
    updates = served.event_types(name).count("TRAFFIC_CONFIG_UPDATED")
    await served.controller.update_traffic(name, None)  # the default again: no change
    assert served.event_types(name).count("TRAFFIC_CONFIG_UPDATED") == updates
