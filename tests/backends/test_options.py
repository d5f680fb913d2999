"""A cluster config as the backends read it (ClusterOptions): replicas, forking, sharing,
batching, network, and which config changes need new workers."""

from __future__ import annotations

from pathlib import Path

import pytest

from regserve.backends.options import (
    BatchSettings,
    ClusterOptions,
    capture_rate,
    check_config,
    needs_new_workers,
)
from regserve.errors import InvalidParameterError
from regserve.nodes import NodeTypes, load_node_types
from regserve.settings import Settings
from regserve.store import ClusterConfig
from regserve.worker.__main__ import parse_args


def _config(node: str = "local-default", **tags: str) -> ClusterConfig:
    return ClusterConfig(node, tuple(tags.items()))


def _replicas(
    config: ClusterConfig | None, settings: Settings, types: NodeTypes | None = None
) -> int:
    return ClusterOptions.of(config, settings, types).replicas


def test_the_tag_wins_over_the_setting() -> None:
    settings = Settings(replicas=3)
    assert _replicas(None, settings) == 3
    assert _replicas(_config(), settings) == 3
    assert _replicas(_config(**{"regserve.replicas": " 2 "}), settings) == 2
    assert _replicas(_config(**{"regserve.replicas": "16"}), Settings()) == 16


def test_a_node_type_that_affords_replicas_is_the_default(tmp_path: Path) -> None:
    file = tmp_path / "node-types.yaml"
    file.write_text("node_types:\n  - {id: pair, cores: 2, memory: 2GiB, replicas: 2}\n")
    node_types = load_node_types(file)
    settings = Settings(replicas=3)
    assert _replicas(_config("pair"), settings, node_types) == 2
    assert _replicas(_config("pair", **{"regserve.replicas": "1"}), settings, node_types) == 1
    assert _replicas(_config("local-default"), settings, node_types) == 3


@pytest.mark.parametrize("value", ["0", "17", "-1", "two", "1.5", ""])
def test_a_bad_replica_count_is_refused_with_the_range(value: str) -> None:
    with pytest.raises(InvalidParameterError, match=r"regserve\.replicas .* 1 to 16"):
        check_config(_config(**{"regserve.replicas": value}))


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
    assert needs_new_workers(
        old, _config(team="fraud", **{"regserve.batching": "on", "regserve.replicas": "2"})
    )


@pytest.mark.parametrize("value", ["off", "", "NONE!", "true"])
def test_a_bad_network_tag_is_refused_with_its_values(value: str) -> None:
    with pytest.raises(InvalidParameterError, match="'none'"):
        check_config(_config(**{"regserve.network": value}))
    assert ClusterOptions.of(_config(**{"regserve.network": " None "}), Settings()).network is False
    assert ClusterOptions.of(_config(), Settings()).network is True


@pytest.mark.parametrize(
    ("tags", "default", "expected"),
    [
        ((), False, False),
        ((), True, True),
        ((("regserve.share_workers", "true"),), False, True),
        ((("regserve.share_workers", " FALSE "),), True, False),
        ((("regserve.share_workers", "maybe"),), True, True),  # ignored: the default applies
        ((("team", "fraud"),), False, False),
    ],
)
def test_the_sharing_tag_overrides_the_setting(
    tags: tuple[tuple[str, str], ...], default: bool, expected: bool
) -> None:
    config = ClusterConfig("local-default", tags)
    assert ClusterOptions.of(config, Settings(share_workers=default)).share_workers is expected


def test_sharing_is_off_by_default_and_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert Settings().share_workers is False
    monkeypatch.setenv("REGSERVE_SHARE_WORKERS", "true")
    assert Settings().share_workers is True


def test_forking_follows_the_setting_and_its_tag() -> None:
    assert ClusterOptions.of(None, Settings()).fork_replicas is True
    assert ClusterOptions.of(None, Settings(fork_replicas=False)).fork_replicas is False
    tagged = _config(**{"regserve.fork_replicas": "false"})
    assert ClusterOptions.of(tagged, Settings()).fork_replicas is False


def _batching(*tags: tuple[str, str]) -> BatchSettings:
    return ClusterOptions.of(ClusterConfig("local-default", tags), Settings()).batching


def test_batching_defaults_without_tags() -> None:
    settings = _batching()
    assert settings == BatchSettings("auto", 64, 0.0)
    assert settings.worker_args() == [
        "--batching",
        "auto",
        "--max-batch-size",
        "64",
        "--max-batch-wait-ms",
        "0",
    ]


def test_batching_tags_set_each_field_and_reach_the_worker_parser() -> None:
    settings = _batching(
        ("team", "fraud"),
        ("regserve.batching", " ON "),
        ("regserve.max_batch_size", "16"),
        ("regserve.max_batch_wait_ms", "2.5"),
    )
    assert settings == BatchSettings("on", 16, 2.5)
    args = parse_args(["--socket", "s", "--model-path", "m", *settings.worker_args()])
    assert (args.batching, args.max_batch_size, args.max_batch_wait_ms) == ("on", 16, 2.5)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("regserve.batching", "sometimes"),
        ("regserve.max_batch_size", "0"),
        ("regserve.max_batch_size", "lots"),
        ("regserve.max_batch_size", "100000"),
        ("regserve.max_batch_wait_ms", "-1"),
        ("regserve.max_batch_wait_ms", "nan"),
    ],
)
def test_a_bad_batching_tag_value_keeps_the_default(key: str, value: str) -> None:
    assert _batching((key, value)) == BatchSettings()


def test_the_idle_timeout_is_the_tag_else_the_setting_and_never_is_none() -> None:
    def idle(settings: Settings, **tags: str) -> float | None:
        return ClusterOptions.of(_config(**tags), settings).idle_timeout

    assert idle(Settings()) == 600
    assert idle(Settings(idle_timeout=0)) is None
    assert idle(Settings(), **{"regserve.idle_timeout": "2.5"}) == 2.5
    assert idle(Settings(), **{"regserve.idle_timeout": " Never "}) is None
    assert idle(Settings(), **{"regserve.idle_timeout": "0"}) is None
    assert idle(Settings(idle_timeout=0), **{"regserve.idle_timeout": "30"}) == 30
    for bad in ("soon", "-1", "1e12"):  # ignored with a warning: the setting
        assert idle(Settings(idle_timeout=45), **{"regserve.idle_timeout": bad}) == 45


def test_inference_table_tags_give_a_sampling_rate_and_restart_nothing() -> None:
    assert capture_rate(()) == 0.0  # off by default
    assert capture_rate(_config(**{"regserve.inference_table": "on"}).tags) == 1.0
    on_tenth = {"regserve.inference_table": " ON ", "regserve.inference_table.sample": "0.1"}
    assert capture_rate(_config(**on_tenth).tags) == 0.1
    off = {"regserve.inference_table": "off", "regserve.inference_table.sample": "0.5"}
    assert capture_rate(_config(**off).tags) == 0.0
    # switching capture on is a label change for the workers: nothing is replaced
    assert not needs_new_workers(_config(), _config(**on_tenth))


@pytest.mark.parametrize(
    ("tags", "named"),
    [
        ({"regserve.inference_table": "maybe"}, "regserve.inference_table must be on or off"),
        (
            {"regserve.inference_table": "on", "regserve.inference_table.sample": "1.5"},
            "regserve.inference_table.sample must be a number from 0 to 1",
        ),
        ({"regserve.inference_table.sample": "ten"}, "got 'ten'"),
    ],
)
def test_bad_inference_table_tags_are_refused_when_set(tags: dict[str, str], named: str) -> None:
    with pytest.raises(InvalidParameterError, match=named):
        check_config(_config(**tags))
