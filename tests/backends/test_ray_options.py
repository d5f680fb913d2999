"""The Ray backend's pure rules: names, deployment options from node types and tags, states."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from regserve.backends.options import ClusterOptions
from regserve.backends.ray.addresses import RayTargets
from regserve.backends.ray.idle import IdleRayTarget, idle_event
from regserve.backends.ray.naming import app_name, app_prefix, deployment_name
from regserve.backends.ray.replica_plan import ReplicaPlan, plan_replicas
from regserve.backends.ray.runtime_env import index_options, runtime_env_for
from regserve.backends.ray.status import ServeView, version_state
from regserve.backends.ray.target import RayTarget
from regserve.envs.spec import EnvSpecError
from regserve.nodes import NodeType, NodeTypes
from regserve.settings import Settings
from regserve.store import ClusterConfig
from tests.support.models import save_iris_model

NODES = NodeTypes.defaults()
LAUNCHING = "VERSION_STATE_LAUNCHING"
READY = "VERSION_STATE_READY"
FAILED = "VERSION_STATE_FAILED"


def test_names_are_safe_unique_and_grouped_by_model() -> None:
    name = app_name("fraud model/é v2", "3")
    assert name.startswith(app_prefix("fraud model/é v2"))
    assert name.endswith("-v3")
    assert set(name) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
    assert app_name("a b", "1") != app_name("a_b", "1")  # same safe text, different models
    assert deployment_name("12") == "v12"


NEVER_IDLE = (("regserve.idle_timeout", "never"),)


def _plan(
    node: str, tags: tuple[tuple[str, str], ...] = (), settings: Settings | None = None
) -> ReplicaPlan:
    options = ClusterOptions.of(ClusterConfig(node, tags), settings or Settings())
    return plan_replicas(options, NODES)


def test_the_default_node_type_reserves_nothing_and_sized_ones_reserve_their_budget() -> None:
    default = _plan("local-default", NEVER_IDLE).deployment_options()
    assert default == {
        "ray_actor_options": {"num_cpus": 0.0},
        "max_ongoing_requests": 256,
        "num_replicas": 1,
    }
    small = _plan("local-small", (("regserve.replicas", "2"), *NEVER_IDLE))
    options = small.deployment_options()
    assert options["ray_actor_options"] == {"num_cpus": 1.0, "memory": 2048 * 1024 * 1024}
    assert options["num_replicas"] == 2
    assert small.describe() == "2 replicas, 1 CPU, 2048 MB each"


def test_the_idle_timeout_scales_a_fixed_count_to_zero() -> None:
    """REGSERVE_IDLE_TIMEOUT (600 s by default): N replicas while in use, none when idle."""
    default = _plan("local-default")
    assert default.deployment_options()["autoscaling_config"] == {
        "min_replicas": 0,
        "initial_replicas": 1,
        "max_replicas": 1,
        "target_ongoing_requests": 0.001,
        "upscale_delay_s": 0.0,
        "downscale_delay_s": 600.0,
        "downscale_to_zero_delay_s": 600.0,
    }
    assert "num_replicas" not in default.deployment_options()
    assert default.describe() == "1 replica (none after 600 s without a request), 0 CPU each"
    two = _plan("local-default", (("regserve.replicas", "2"), ("regserve.idle_timeout", "3")))
    scaling = two.deployment_options()["autoscaling_config"]
    assert (scaling["initial_replicas"], scaling["max_replicas"]) == (2, 2)
    # Serve goes to zero only from one replica: that last step has no delay of its own
    assert (scaling["downscale_delay_s"], scaling["downscale_to_zero_delay_s"]) == (3.0, 0.0)
    assert two.describe().startswith("2 replicas (none after 3 s without a request)")
    # 0 as the server setting is never, as the tag "never" is: the fixed count stays
    assert (
        "num_replicas" in _plan("local-default", (), Settings(idle_timeout=0)).deployment_options()
    )


def test_explicit_autoscaling_tags_win_over_the_idle_timeout() -> None:
    bounds = (("regserve.min_replicas", "0"), ("regserve.max_replicas", "2"))
    # min_replicas 0 without a delay: the idle timeout is the delay before zero
    scaling = _plan("local-default", bounds).deployment_options()["autoscaling_config"]
    assert scaling["downscale_to_zero_delay_s"] == 600.0
    assert "downscale_delay_s" not in scaling
    # the idle timeout tag wins over the downscale delay for the last replica
    tags = (*bounds, ("regserve.downscale_delay_s", "5"), ("regserve.idle_timeout", "30"))
    scaling = _plan("local-default", tags).deployment_options()["autoscaling_config"]
    assert (scaling["downscale_delay_s"], scaling["downscale_to_zero_delay_s"]) == (5.0, 30.0)
    # min_replicas 1: never idle, whatever the idle timeout
    one = (("regserve.min_replicas", "1"), ("regserve.max_replicas", "2"))
    scaling = _plan("local-default", one).deployment_options()["autoscaling_config"]
    assert scaling["min_replicas"] == 1
    assert "downscale_to_zero_delay_s" not in scaling
    # never with min_replicas 0: the explicit tag is Serve's own knob and is kept
    scaling = _plan("local-default", (*bounds, *NEVER_IDLE)).deployment_options()
    assert scaling["autoscaling_config"]["min_replicas"] == 0


@pytest.mark.parametrize(
    ("before", "after", "event"),
    [
        (1, 0, "VERSION_IDLE"),
        (2, 0, "VERSION_IDLE"),
        (0, 1, "VERSION_WOKEN"),
        (0, 3, "VERSION_WOKEN"),
    ],
)
def test_going_to_and_from_zero_replicas_is_idle_and_woken(
    before: int, after: int, event: str
) -> None:
    found = idle_event("4", before, after)
    assert found is not None
    assert found[0] == event
    assert "version 4" in found[1]


@pytest.mark.parametrize(("before", "after"), [(1, 2), (2, 1), (-1, 0), (-1, 1), (0, 0)])
def test_other_replica_changes_are_not_idle_events(before: int, after: int) -> None:
    assert idle_event("4", before, after) is None


def test_the_leads_target_says_whether_it_is_loaded() -> None:
    target = IdleRayTarget(object(), "Version 2 of 'm'")
    assert (target.idle, target.idle_reason, target.last_request) == (False, None, None)
    target.idle = True
    assert target.idle_reason == "IDLE_TIMEOUT"


def test_autoscaling_tags_including_scale_to_zero() -> None:
    tags = (
        ("regserve.min_replicas", "0"),
        ("regserve.max_replicas", "3"),
        ("regserve.target_ongoing_requests", "8"),
        ("regserve.downscale_delay_s", "5"),
    )
    options = _plan("local-default", tags).deployment_options()
    assert "num_replicas" not in options
    assert options["autoscaling_config"] == {
        "min_replicas": 0,
        "max_replicas": 3,
        "target_ongoing_requests": 8.0,
        "downscale_delay_s": 5.0,
        "downscale_to_zero_delay_s": 5.0,
    }


@pytest.mark.parametrize(
    "tags",
    [
        (("regserve.num_cpus", "-1"),),
        (("regserve.max_ongoing_requests", "nan"),),
        (("regserve.memory_mb", "lots"),),
    ],
)
def test_tags_that_do_not_parse_are_ignored(tags: tuple[tuple[str, str], ...]) -> None:
    assert _plan("local-default", tags) == _plan("local-default")


def test_overrides_of_the_node_types_figures() -> None:
    tags = (("regserve.num_cpus", "0.5"), ("regserve.memory_mb", "300"))
    actor = _plan("local-large", tags).deployment_options()["ray_actor_options"]
    assert actor == {"num_cpus": 0.5, "memory": 300 * 1024 * 1024}


@pytest.mark.parametrize(
    ("view", "state", "words"),
    [
        (ServeView(None), LAUNCHING, "Waiting for Ray Serve"),
        (ServeView("DEPLOYING", "", "UPDATING", "starting 1 replica"), LAUNCHING, "starting 1"),
        (ServeView("RUNNING", "", "HEALTHY", "", 2), READY, "(2 replicas)"),
        (ServeView("RUNNING", "", "HEALTHY", "", 0), READY, "scaled to zero"),
        (ServeView("RUNNING", "", "UPSCALING", "", 1), READY, "(1 replica)"),
        (ServeView("UNHEALTHY", "", "UNHEALTHY", "health check failed"), LAUNCHING, "health"),
        (ServeView("DEPLOY_FAILED", "app", "DEPLOY_FAILED", "boom"), FAILED, "version: boom"),
        (ServeView("DEPLOY_FAILED", "env build failed"), FAILED, "env build failed"),
    ],
)
def test_serve_status_maps_to_version_states(view: ServeView, state: str, words: str) -> None:
    got, message = version_state(view)
    assert got == state
    assert words in message


def test_runtime_env_per_env_manager(tmp_path: Path) -> None:
    model = save_iris_model(tmp_path / "model")
    assert runtime_env_for(model, "local", []) == ({}, [])
    shipped = ["gcs://_ray_pkg_0123456789abcdef.zip"]  # what Ray uploaded the package to
    env, _ = runtime_env_for(model, "local", shipped)
    assert env["py_modules"] == shipped
    json.dumps(env)  # Serve writes an application's config as JSON
    env, _ = runtime_env_for(model, "local", [], {"MODEL_API_KEY": "k"})
    assert env == {"env_vars": {"MODEL_API_KEY": "k"}}  # a local Ray has regserve installed
    env, notes = runtime_env_for(model, "virtualenv", shipped)
    packages = env["uv"]["packages"]
    assert any(p.startswith("scikit-learn") for p in packages)
    assert any(p.startswith("mlflow") for p in packages)
    assert "requirements from python_env.yaml" in notes[0]
    # no index configured: the nodes' uv with its cache (Ray's default option is --no-cache)
    assert env["uv"]["uv_pip_install_options"] == []
    assert "the node's uv configuration" in notes[1]
    with pytest.raises(EnvSpecError):
        runtime_env_for(tmp_path, "virtualenv", shipped)


def test_a_version_that_served_keeps_serving_through_an_update() -> None:
    updating = ServeView("DEPLOYING", "", "UPDATING", "rolling", 1)
    assert version_state(updating, was_ready=True)[0] == READY
    assert version_state(updating, was_ready=False)[0] == LAUNCHING
    assert version_state(ServeView("RUNNING", "", "UNHEALTHY", "", 0), was_ready=True)[0] == (
        LAUNCHING
    )


def test_ray_addresses_name_the_application_and_deployment() -> None:
    targets = RayTargets()
    target = RayTarget(object(), "Version 2 of 'm'", app_name("m", "2"), deployment_name("2"))
    assert targets.addresses(target) == [f"ray:{app_name('m', '2')}/v2"]
    assert targets.addresses(object()) == []  # type: ignore[arg-type]
    assert targets.target("m", "2", ["unix:/tmp/x.sock"]) is None


def test_the_nodes_install_from_the_indexes_regserve_builds_with(tmp_path: Path) -> None:
    model = save_iris_model(tmp_path / "model")
    settings = Settings(
        package_index_url="https://ci:s3cret@pypi.example/simple",
        extra_index_urls=["https://extra.example/simple"],
    )
    options = index_options(settings, {"UV_INDEX_URL": "https://ignored.example/simple"})
    assert options == [
        "--index-url",
        "https://ci:s3cret@pypi.example/simple",
        "--extra-index-url",
        "https://extra.example/simple",
    ]
    env, notes = runtime_env_for(model, "virtualenv", [], None, options)
    assert env["uv"]["uv_pip_install_options"] == options
    json.dumps(env)
    # the log names the indexes, never an index's password
    assert "https://ci:***@pypi.example/simple" in notes[1]
    assert "s3cret" not in " ".join(notes)
    # unset settings: uv's own variables in regserve's environment, as its local builds use
    environ = {"UV_DEFAULT_INDEX": "https://mirror.example/simple", "UV_INDEX": "a b"}
    assert index_options(Settings(), environ) == [
        "--default-index",
        "https://mirror.example/simple",
        "--index",
        "a",
        "--index",
        "b",
    ]


def test_gpus_custom_resources_and_a_hard_spread_per_replica() -> None:
    nodes = NodeTypes(
        [
            NodeTypes.defaults()["local-default"],
            NodeType("gpu", 4, 8192, "8 GB Memory, 4 Cores, 1 GPU", 2, 1, {"a10g": 1}),
        ]
    )
    config = ClusterConfig("gpu", (("regserve.max_replicas_per_node", "1"),))
    plan = plan_replicas(ClusterOptions.of(config, Settings()), nodes)
    options = plan.deployment_options()
    assert options["ray_actor_options"] == {
        "num_cpus": 4.0,
        "memory": 8192 * 1024 * 1024,
        "num_gpus": 1.0,
        "resources": {"a10g": 1},
    }
    assert options["max_replicas_per_node"] == 1
    assert plan.request() == {"CPU": 4.0, "memory": 8192 * 1024 * 1024, "GPU": 1.0, "a10g": 1}
    assert plan.describe() == (
        "1 replica (none after 600 s without a request), 4 CPU, 8192 MB, 1 GPU, 1 a10g each; "
        "at most 1 per node"
    )
    # the GPU count is a tag too; the default spreads softly (no max_replicas_per_node)
    config = ClusterConfig("local-default", (("regserve.num_gpus", "0.5"),))
    options = plan_replicas(ClusterOptions.of(config, Settings()), nodes).deployment_options()
    assert options["ray_actor_options"] == {"num_cpus": 0.0, "num_gpus": 0.5}
    assert "max_replicas_per_node" not in options
