"""What regserve says when Ray cannot run a version: a node that could not build its
environment, and replicas no node can hold. The Serve messages are Ray 2.60's own, captured
from real failures on this machine (traceback frames shortened)."""

from __future__ import annotations

import pytest

from regserve.backends.ray.placement import placement_problem
from regserve.backends.ray.replica_plan import ReplicaPlan
from regserve.backends.ray.status import ServeView, version_state

_FAILED_TO_START = (
    "The deployment failed to start 3 times in a row. This may be due to a problem with its "
    "constructor or initial health check failing. See controller logs for details. Error:\n"
    "Exception when allocating Replica(id='k19kg4t2', deployment='v1', app='regserve-m-v1'): "
    "Failed to set up runtime environment.\n"
    "Could not create the actor because its associated runtime env failed to be created.\n"
    "[Node 192.0.2.2] Traceback (most recent call last):\n"
    '  File "/venv/lib/python3.11/site-packages/ray/_private/runtime_env/uv.py", line 240, in '
    "_install_uv_packages\n"
    "    await check_output_cmd(uv_install_cmd, logger=logger, cwd=cwd, env=pip_env)\n"
    "ray._private.runtime_env.utils.SubprocessCalledProcessError: Run cmd[4] failed with the "
    "following details.\n"
    "Command '['/tmp/rt/session_x/runtime_resources/uv/ad50c95/virtualenv/bin/python', '-m', "
    "'uv', 'pip', 'install', '-r', '/tmp/rt/reqs.txt', '--index-url', "
    "'http://127.0.0.1:9/simple']' returned non-zero exit status 2.\n"
    "Last 50 lines of stdout:\n"
)
NOT_FOUND = _FAILED_TO_START + (
    "    Using Python 3.11.7 environment at: /tmp/rt/session_x/runtime_resources/uv/ad50c95/"
    "virtualenv\n"
    "    error: No solution found when resolving dependencies\n"
    "      cause: Because no-such-package-rayplace was not found in the package registry and "
    "you require no-such-package-rayplace==1.0, we can conclude that your requirements are "
    "unsatisfiable.\n"
)
UNREACHABLE = _FAILED_TO_START + (
    "    Using Python 3.11.7 environment at: /tmp/rt/session_x/virtualenv\n"
    "    error: Request failed after 3 retries in 9.0s\n"
    "      cause: Failed to fetch: http://127.0.0.1:9/simple/no-such-package-rayplace/\n"
    "      cause: error sending request for url (http://127.0.0.1:9/simple/"
    "no-such-package-rayplace/)\n"
    "      cause: client error (Connect)\n"
    "      cause: tcp connect error\n"
    "      cause: Connection refused (os error 111)\n"
)
INDEX = "--index-url http://127.0.0.1:9/simple"


def _failed(message: str) -> tuple[str, str]:
    view = ServeView(
        "DEPLOY_FAILED", "Failed to update the deployments ['v1'].", "DEPLOY_FAILED", message
    )
    state, said = version_state(view, indexes=INDEX)
    return str(state), said


def test_a_requirement_the_index_does_not_have_names_the_node_uv_and_the_index() -> None:
    state, said = _failed(NOT_FOUND)
    assert state == "VERSION_STATE_FAILED"
    assert said.startswith("Ray could not build this version's environment on Ray node 192.0.2.2: ")
    assert "no-such-package-rayplace was not found in the package registry" in said
    assert said.endswith(f"(uv installing the model's requirements from {INDEX}).")
    assert "Traceback" not in said
    assert "File " not in said
    assert "/tmp/rt" not in said  # not the environment's path either


def test_an_unreachable_index_says_so() -> None:
    state, said = _failed(UNREACHABLE)
    assert state == "VERSION_STATE_FAILED"
    assert "Failed to fetch: http://127.0.0.1:9/simple/no-such-package-rayplace/" in said
    assert "error: Request failed after 3 retries in 9.0s" in said
    assert "cause: Connection refused (os error 111) (uv installing" in said
    assert "Traceback" not in said


def test_a_build_past_rays_timeout_and_an_unknown_failure() -> None:
    timeout = _FAILED_TO_START.split("[Node")[0] + (
        "[Node 10.0.0.7] Failed to install runtime_env within the timeout of 600 seconds. ..."
    )
    assert "took longer than Ray's runtime_env timeout (600 s)" in _failed(timeout)[1]
    other = _FAILED_TO_START.replace("Last 50 lines of stdout:\n", "")
    said = _failed(other)[1]
    assert "SubprocessCalledProcessError: Run cmd[4] failed" in said
    # a model that cannot load keeps Serve's words
    _, said = _failed("ImportError: no module named 'xgboost'")
    assert said == "Ray Serve could not deploy this version: ImportError: no module named 'xgboost'"


def test_serve_waiting_for_room_is_said_plainly() -> None:
    message = (
        "Deployment 'v1' in application 'regserve-m-v1' has 2 replicas that have taken more "
        "than 30s to be scheduled. This may be due to waiting for the cluster to auto-scale or "
        "for a runtime environment to be installed. Resources required for each replica: "
        '{"CPU": 2.0}, total resources available: {"CPU": 1.0}. Use `ray status` for more '
        "details."
    )
    state, said = version_state(ServeView("DEPLOYING", "", "UPDATING", message))
    assert str(state) == "VERSION_STATE_LAUNCHING"
    assert said == (
        "Waiting for room on the Ray cluster: 2 replica(s) not started after 30 s. Each needs "
        '{"CPU": 2.0}; free now: {"CPU": 1.0} (or the replica\'s runtime_env is still being '
        "built)."
    )


def _node(address: str, node_id: str, alive: bool = True, **resources: float) -> dict[str, object]:
    return {
        "NodeID": node_id,
        "Alive": alive,
        "NodeManagerAddress": address,
        "Resources": {"memory": 4 * 1024**3, "object_store_memory": 1e8, **resources},
    }


NODES = [
    _node("10.0.0.1", "aaaaaaaaaaaa"),  # a head with no CPU
    _node("10.0.0.2", "bbbbbbbbbbbb", CPU=2),
    _node("10.0.0.3", "cccccccccccc", CPU=2),
    _node("10.0.0.4", "dddddddddddd", alive=False, CPU=64, GPU=8),
]


@pytest.mark.parametrize(
    ("plan", "words"),
    [
        (
            ReplicaPlan(num_cpus=4),
            "each needs 4 CPU, and the nodes have node 10.0.0.1 (aaaaaaaa): "
            "0 CPU; node 10.0.0.2 (bbbbbbbb): 2 CPU; node 10.0.0.3 (cccccccc): 2 CPU.",
        ),
        (
            ReplicaPlan(num_cpus=1, num_gpus=1),
            "each needs 1 CPU, 1 GPU, and the nodes have node 10.0.0.1 (aaaaaaaa): 0 CPU, 0 GPU;",
        ),
        (
            ReplicaPlan(memory_mb=8192),
            "each needs 8192 MiB memory, and the nodes have node "
            "10.0.0.1 (aaaaaaaa): 4096 MiB memory;",
        ),
        (ReplicaPlan(resources={"a10g": 1}), "each needs 1 a10g"),
        (
            ReplicaPlan(num_cpus=1, num_replicas=3, max_replicas_per_node=1),
            "3 replicas at most 1 per node (regserve.max_replicas_per_node) need 3 nodes that can "
            "hold one; the Ray cluster has 2 (node 10.0.0.2 (bbbbbbbb), node 10.0.0.3 (cccccccc)).",
        ),
    ],
)
def test_replicas_no_node_can_hold_are_named_with_what_the_nodes_have(
    plan: ReplicaPlan, words: str
) -> None:
    said = placement_problem(plan, NODES)
    assert said is not None
    assert words in said
    assert "64 CPU" not in said  # a dead node does not count


@pytest.mark.parametrize(
    "plan",
    [
        ReplicaPlan(),  # local-default: reserves nothing
        ReplicaPlan(num_cpus=2, memory_mb=2048, num_replicas=5),  # fits, if not all at once
        ReplicaPlan(num_cpus=1, num_replicas=2, max_replicas_per_node=1),
    ],
)
def test_what_some_node_can_hold_is_no_problem(plan: ReplicaPlan) -> None:
    assert placement_problem(plan, NODES) is None
