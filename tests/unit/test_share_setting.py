"""Whether a model's versions share worker processes: the setting and the cluster tag."""

from __future__ import annotations

import pytest

from regserve.backends.sharing import share_workers
from regserve.settings import Settings


def test_the_setting_is_off_by_default_and_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert Settings().share_workers is False
    monkeypatch.setenv("REGSERVE_SHARE_WORKERS", "true")
    assert Settings().share_workers is True


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
def test_the_tag_overrides_the_setting(
    tags: tuple[tuple[str, str], ...], default: bool, expected: bool
) -> None:
    assert share_workers(tags, default) is expected
