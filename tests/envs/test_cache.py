"""The environment cache: least recently used, unused environments go first."""

from __future__ import annotations

import json
from pathlib import Path

from regserve.envs import EnvironmentManager
from regserve.sandbox import Isolation
from regserve.settings import Settings


def fake_env(root: Path, key: str, size: int, last_used: float) -> None:
    (root / key / "bin").mkdir(parents=True)
    meta = {"key": key, "size": size, "last_used": last_used, "mlflow_version": "3"}
    (root / key / ".regserve-env.json").write_text(json.dumps(meta))


def test_evicts_least_recently_used_unused_environments(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, env_cache_max_bytes=250)
    manager = EnvironmentManager(settings, Isolation(settings, tmp_path))
    root = manager.root
    fake_env(root, "oldest-in-use", 100, 1.0)
    fake_env(root, "old", 100, 2.0)
    fake_env(root, "newer", 100, 3.0)
    fake_env(root, "newest", 100, 4.0)
    manager.acquire("oldest-in-use", ("m", "1"))
    manager._evict()
    left = sorted(p.name for p in root.iterdir() if (p / ".regserve-env.json").exists())
    assert left == ["newest", "oldest-in-use"]  # 200 bytes: under the limit, in-use kept
    manager.release(("m", "1"))
    manager._evict()
    assert (root / "oldest-in-use").exists()  # under the limit now: nothing more to do


def test_worker_code_is_materialized_once_with_only_the_worker(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    first = EnvironmentManager(settings, Isolation(settings, tmp_path)).worker_path
    second = EnvironmentManager(settings, Isolation(settings, tmp_path)).worker_path
    assert first == second
    assert sorted(p.name for p in (first / "regserve").iterdir()) == ["__init__.py", "worker"]
    assert (first / "regserve" / "worker" / "wire.py").exists()
