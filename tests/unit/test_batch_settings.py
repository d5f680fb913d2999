"""Batching settings from a model's cluster config tags, as the supervisor passes them on."""

from __future__ import annotations

import pytest

from regserve.backends.batching import BatchSettings
from regserve.worker.__main__ import parse_args


def test_defaults_without_tags() -> None:
    settings = BatchSettings.from_tags(())
    assert settings == BatchSettings("auto", 64, 0.0)
    assert settings.worker_args() == [
        "--batching", "auto", "--max-batch-size", "64", "--max-batch-wait-ms", "0",
    ]  # fmt: skip


def test_tags_set_each_field_and_reach_the_worker_parser() -> None:
    tags = (
        ("team", "fraud"),
        ("regserve.batching", " ON "),
        ("regserve.max_batch_size", "16"),
        ("regserve.max_batch_wait_ms", "2.5"),
    )
    settings = BatchSettings.from_tags(tags)
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
def test_a_bad_tag_value_keeps_the_default(key: str, value: str) -> None:
    assert BatchSettings.from_tags([(key, value)]) == BatchSettings()
