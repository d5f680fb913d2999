"""The Ray backend's adoption rules in-process: the mark a deployment carries, and which
changes make a version's application one to deploy again (``backends/ray/adoption.py``).
The adoption itself runs on a real cluster: ``tests/e2e/test_ray_cluster.py``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from regserve.backends.ray.adoption import Mark, fingerprint, owner_of
from regserve.settings import Settings

OPTIONS: dict[str, Any] = {
    "name": "v1",
    "num_replicas": 1,
    "max_ongoing_requests": 256,
    "ray_actor_options": {"num_cpus": 0, "runtime_env": {"py_modules": ["gcs://_ray_pkg_a.zip"]}},
}
ARGS = ("/data/models/m/1", "m", "1", "auto", 64, 0.0, "ray.serve", {})


def _model(tmp_path: Path, text: str = "run_id: abc\n") -> Path:
    (tmp_path / "MLmodel").write_text(text)
    return tmp_path


def test_a_mark_goes_through_a_user_config_and_nothing_else_is_one() -> None:
    mark = Mark("owner", "m", "1", "digest")
    assert Mark.from_user_config(mark.to_user_config()) == mark
    for other in (None, {}, {"regserve": "x"}, {"regserve": {"owner": "o"}}, ["regserve"]):
        assert Mark.from_user_config(other) is None


def test_the_fingerprint_changes_with_what_the_deployment_is_made_from(tmp_path: Path) -> None:
    model = _model(tmp_path)
    first = fingerprint(OPTIONS, ARGS, model)
    assert first == fingerprint(dict(OPTIONS), ARGS, model)
    more = {**OPTIONS, "num_replicas": 2}
    assert fingerprint(more, ARGS, model) != first
    env = {"py_modules": ["gcs://_ray_pkg_a.zip"], "env_vars": {"A": "1"}}
    with_env = {**OPTIONS, "ray_actor_options": {"num_cpus": 0, "runtime_env": env}}
    assert fingerprint(with_env, ARGS, model) != first
    assert fingerprint(OPTIONS, (*ARGS[:4], 8, *ARGS[5:]), model) != first
    assert fingerprint(OPTIONS, ARGS, _model(tmp_path, "run_id: other\n")) != first


def test_the_uploaded_package_uri_and_missing_files(tmp_path: Path) -> None:
    model = _model(tmp_path)
    # the upload's URI also covers bytecode caches: the worker's sources stand for it
    reuploaded = {"num_cpus": 0, "runtime_env": {"py_modules": ["gcs://_ray_pkg_b.zip"]}}
    assert fingerprint({**OPTIONS, "ray_actor_options": reuploaded}, ARGS, model) == fingerprint(
        OPTIONS, ARGS, model
    )
    assert fingerprint(OPTIONS, ARGS, tmp_path / "gone") == ""  # nothing to compare: deploy


def test_the_owner_is_the_state_store(tmp_path: Path) -> None:
    here = Settings(data_dir=tmp_path / "a")
    assert owner_of(here) == owner_of(Settings(data_dir=tmp_path / "a"))
    assert owner_of(here) != owner_of(Settings(data_dir=tmp_path / "b"))
    shared = "postgresql+psycopg://u@db/regserve"
    assert owner_of(Settings(data_dir=tmp_path / "a", store_uri=shared)) == owner_of(
        Settings(data_dir=tmp_path / "b", store_uri=shared)
    )
