"""The replica count of a cluster and which config changes need new workers."""

from __future__ import annotations

from pathlib import Path

import pytest

from regserve.backends.replicas import check_tags, needs_new_workers, replicas_for
from regserve.errors import InvalidParameterError
from regserve.nodes import load_node_types
from regserve.settings import Settings
from regserve.store import ClusterConfig


def _config(node: str = "local-default", **tags: str) -> ClusterConfig:
    return ClusterConfig(node, tuple(tags.items()))


def test_the_tag_wins_over_the_setting() -> None:
    settings = Settings(replicas=3)
    assert replicas_for(None, settings) == 3
    assert replicas_for(_config(), settings) == 3
    assert replicas_for(_config(**{"regserve.replicas": " 2 "}), settings) == 2
    assert replicas_for(_config(**{"regserve.replicas": "16"}), Settings()) == 16


def test_a_node_type_that_affords_replicas_is_the_default(tmp_path: Path) -> None:
    file = tmp_path / "node-types.yaml"
    file.write_text("node_types:\n  - {id: pair, cores: 2, memory: 2GiB, replicas: 2}\n")
    node_types = load_node_types(file)
    settings = Settings(replicas=3)
    assert replicas_for(_config("pair"), settings, node_types) == 2
    assert replicas_for(_config("pair", **{"regserve.replicas": "1"}), settings, node_types) == 1
    assert replicas_for(_config("local-default"), settings, node_types) == 3


@pytest.mark.parametrize("value", ["0", "17", "-1", "two", "1.5", ""])
def test_a_bad_replica_count_is_refused_with_the_range(value: str) -> None:
    with pytest.raises(InvalidParameterError, match=r"regserve\.replicas .* 1 to 16"):
        check_tags(_config(**{"regserve.replicas": value}))


def test_the_setting_is_bounded() -> None:
    with pytest.raises(ValueError, match="replicas"):
        Settings(replicas=0)


def test_labels_need_no_new_workers_but_node_types_and_regserve_tags_do() -> None:
    old = _config(team="fraud", **{"regserve.batching": "on"})
    assert not needs_new_workers(old, _config(team="risk", **{"regserve.batching": "on"}))
    assert not needs_new_workers(old, _config(**{"regserve.batching": "on"}))
    assert needs_new_workers(
        old, _config("local-small", team="fraud", **{"regserve.batching": "on"})
    )
    assert needs_new_workers(old, _config(team="fraud", **{"regserve.batching": "off"}))
    assert needs_new_workers(old, _config(team="fraud", **{"regserve.batching": "on",
                                                           "regserve.replicas": "2"}))  # fmt: skip
