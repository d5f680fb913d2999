"""Fixtures for the client: a profiles file as ``regserve login`` writes it."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def profiles(tmp_path: Path) -> dict[str, str]:
    path = tmp_path / "profiles.ini"
    path.write_text(
        "[default]\nhost = http://default:1\ntoken = t-default\n"
        "[prod]\nhost = prod.example:9000\ntoken = t-prod\n"
    )
    return {"REGSERVE_CONFIG_FILE": str(path)}
