"""The node types catalogue: defaults, the operator's file, and bad files refused clearly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from regserve.nodes import NodeTypes, NodeTypesError, load_node_types


def test_defaults_offer_the_machine_first_then_three_budgets() -> None:
    api = NodeTypes.defaults().api()
    assert list(api) == ["local-default", "local-small", "local-medium", "local-large"]
    assert api["local-small"] == {
        "memory_mb": 2048,
        "num_cores": 1,
        "description": "2 GB Memory, 1 Cores",
        "instance_type_id": "local-small",
    }
    assert (api["local-large"]["num_cores"], api["local-large"]["memory_mb"]) == (4, 8192)
    assert api["local-default"]["instance_type_id"] == "local"
    assert not NodeTypes.defaults()["local-default"].limited
    assert NodeTypes.defaults().node_type_replicas("local-medium") == 1


def test_a_yaml_file_replaces_the_sized_types(tmp_path: Path) -> None:
    path = tmp_path / "node-types.yaml"
    path.write_text(
        "node_types:\n"
        "  - {id: tiny, cores: 0.5, memory: 300MB, replicas: 2}\n"
        "  - {id: big, cores: 8, memory: 16GiB, description: For the ranker}\n"
        "  - {id: local-default, replicas: 3}\n"
    )
    types = load_node_types(path)
    assert list(types) == ["local-default", "tiny", "big"]
    assert (types["tiny"].cores, types["tiny"].memory_mb) == (0.5, 300)
    assert types["big"].memory_mb == 16 * 1024
    assert types.api()["tiny"]["description"] == "300 MB Memory, 0.5 Cores"
    assert types.api()["big"]["description"] == "For the ranker"
    assert [types.node_type_replicas(t) for t in ("tiny", "big", "local-default")] == [2, 1, 3]
    assert types.node_type_replicas("gone") == 1


def test_gpus_and_custom_ray_resources_per_replica(tmp_path: Path) -> None:
    path = tmp_path / "node-types.yaml"
    path.write_text(
        "node_types:\n"
        "  - {id: gpu, cores: 4, memory: 16GiB, gpus: 1, ray_resources: {accelerator_a10g: 1}}\n"
        "  - {id: cpu, cores: 1, memory: 1GiB}\n"
    )
    types = load_node_types(path)
    assert (types["gpu"].gpus, dict(types["gpu"].ray_resources)) == (1, {"accelerator_a10g": 1})
    api = types.api()
    assert api["gpu"]["num_gpus"] == 1
    assert api["gpu"]["description"] == "16 GB Memory, 4 Cores, 1 GPU"
    assert "num_gpus" not in api["cpu"]  # Databricks' shape, as before, without GPUs


def test_a_json_file_with_memory_in_mib(tmp_path: Path) -> None:
    path = tmp_path / "node-types.json"
    path.write_text('{"node_types": [{"id": "m1", "cores": 1, "memory": 1536}]}')
    assert load_node_types(path)["m1"].memory_mb == 1536


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("node_types: []", "node_types: List should have at least 1 item"),
        ("node_types:\n  - {id: a, cores: 1}\n", "'a' needs cores and memory"),
        ("node_types:\n  - {id: a, cores: 1, memory: lots}\n", "'lots' is not a size"),
        ("node_types:\n  - {id: a, cores: -1, memory: 1G}\n", "node_types.0.cores"),
        ("node_types:\n  - {id: a, cores: 1, memory: 1G, gpus: -1}\n", "node_types.0.gpus"),
        ("node_types:\n  - {id: a, cores: 1, memory: 1G, disks: 1}\n", "node_types.0.disks"),
        (
            "node_types:\n  - {id: a, cores: 1, memory: 1G, ray_resources: {CPU: 1}}\n",
            "'CPU' is not a custom Ray resource name",
        ),
        (
            "node_types:\n  - {id: a, cores: 1, memory: 1G, ray_resources: {x: 0}}\n",
            "'x': 0.0 is not an amount",
        ),
        ("node_types:\n  - {id: local-default, gpus: 1}\n", "whole machine"),
        ("node_types:\n  - {id: a b, cores: 1, memory: 1G}\n", "node_types.0.id"),
        (
            "node_types:\n  - {id: a, cores: 1, memory: 1G}\n  - {id: a, cores: 2, memory: 2G}\n",
            "'a' is listed twice",
        ),
        ("node_types:\n  - {id: local-default, cores: 1, memory: 1G}\n", "whole machine"),
        ("node_types: [\n", "expected"),
        ("just text", "Input should be a valid dictionary"),
    ],
)
def test_a_bad_file_is_refused_with_where_and_why(tmp_path: Path, text: str, says: str) -> None:
    path = tmp_path / "node-types.yaml"
    path.write_text(text)
    with pytest.raises(NodeTypesError) as caught:
        load_node_types(path)
    assert str(caught.value).startswith(f"node types file {path}: ")
    assert says in str(caught.value)


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(NodeTypesError, match="cannot be read"):
        load_node_types(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    ("memory", "mib"),
    [
        ("300MB", 300),
        ("300MiB", 300),
        ("1.5G", 1536),
        ("2GB", 2048),
        ("2 GiB", 2048),
        ("1048576K", 1024),
        (512, 512),
        ("512", 512),
    ],
)
def test_memory_sizes_are_binary_and_a_bare_number_is_mib(
    tmp_path: Path, memory: object, mib: int
) -> None:
    path = tmp_path / "node-types.json"
    path.write_text(json.dumps({"node_types": [{"id": "n", "cores": 1, "memory": memory}]}))
    assert load_node_types(path)["n"].memory_mb == mib
