from __future__ import annotations

import time
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from regserve.errors import NotFoundError
from regserve.registry import RegistryReader, RegistryUnavailableError
from regserve.registry.reader import local_artifacts_resolver, name_filter
from tests.registry.conftest import HostedServer, free_port, run_mlflow
from tests.support.models import IRIS_COLUMNS


def readers(hosted: HostedServer) -> list[RegistryReader]:
    """The hosted store read directly, and the same server read over HTTP."""
    return [hosted.registry.reader, RegistryReader(hosted.url)]


def test_snapshot_shows_stages_aliases_and_status(hosted: HostedServer, two_versions: str) -> None:
    for reader in readers(hosted):
        snap = reader.snapshot(two_versions)
        assert snap is not None
        assert snap.name == two_versions
        assert snap.description == "two and a bit"
        assert [v.version for v in snap.versions] == ["1", "2", "3"]
        assert [v.stage for v in snap.versions] == ["Staging", "Production", "Archived"]
        assert {v.status for v in snap.versions} == {"READY"}
        assert snap.aliases == {"champion": "2"}
        assert snap.versions[1].aliases == ("champion",)
        assert snap.versions[0].aliases == ()
        assert all(v.source.startswith("models:/m-") for v in snap.versions)
        assert all(v.run_id for v in snap.versions)
        assert all(v.creation_timestamp > 1_600_000_000_000 for v in snap.versions)


def test_searches_follow_pages(hosted: HostedServer, two_versions: str) -> None:
    registry = hosted.registry
    for reader in (
        RegistryReader(registry.backend_store_uri, page_size=1),
        RegistryReader(hosted.url, page_size=1),
    ):
        snap = reader.snapshot(two_versions)
        assert snap is not None
        assert [v.version for v in snap.versions] == ["1", "2", "3"]
        assert len(reader.list_models()) >= 1
        assert reader.list_models() == registry.reader.list_models()


def test_snapshot_of_missing_model_is_none(hosted: HostedServer) -> None:
    for reader in readers(hosted):
        assert reader.snapshot("no-such-model") is None


def test_list_models(hosted: HostedServer, two_versions: str) -> None:
    for reader in readers(hosted):
        assert two_versions in reader.list_models()


def test_download_is_loadable_and_happens_once(
    hosted: HostedServer, two_versions: str, tmp_path: Path
) -> None:
    for i, reader in enumerate(readers(hosted)):
        dest = tmp_path / f"reader-{i}" / "v2"
        path = reader.download(two_versions, "2", dest)
        assert path == dest
        assert (dest / "MLmodel").is_file()
        assert [p.name for p in dest.parent.iterdir()] == ["v2"]  # no staging dir left
        frame = pd.DataFrame([[5.1, 3.5, 1.4, 0.2]], columns=IRIS_COLUMNS)
        assert list(mlflow.pyfunc.load_model(str(path)).predict(frame)) == [0]
        stamp = (dest / "MLmodel").stat().st_mtime_ns
        assert reader.download(two_versions, "2", dest) == dest
        assert (dest / "MLmodel").stat().st_mtime_ns == stamp


def test_download_of_missing_version_is_not_found(hosted: HostedServer, tmp_path: Path) -> None:
    for reader in readers(hosted):
        with pytest.raises(NotFoundError):
            reader.download("no-such-model", "1", tmp_path / "x")
        assert not (tmp_path / "x").exists()


def test_ping(hosted: HostedServer) -> None:
    for reader in readers(hosted):
        reader.ping()


def test_dead_http_registry_fails_fast() -> None:
    reader = RegistryReader(f"http://127.0.0.1:{free_port()}", http_max_retries=1)
    started = time.monotonic()
    with pytest.raises(RegistryUnavailableError):
        reader.ping()
    with pytest.raises(RegistryUnavailableError):
        reader.snapshot("anything")
    assert time.monotonic() - started < 10


def test_sqlite_registry_uri(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'plain.db'}"
    run_mlflow(
        uri,
        f"""
        client.create_experiment("abs", artifact_location={(tmp_path / "art").as_uri()!r})
        mlflow.set_experiment("abs")
        log_version("plain", c=1.0)
        client.set_registered_model_alias("plain", "best", "1")
        """,
    )
    reader = RegistryReader(uri)
    snap = reader.snapshot("plain")
    assert snap is not None
    assert [(v.version, v.stage, v.status) for v in snap.versions] == [("1", "None", "READY")]
    assert snap.aliases == {"best": "1"}
    path = reader.download("plain", "1", tmp_path / "dl")
    assert (path / "MLmodel").is_file()


def test_name_filter_quotes() -> None:
    assert name_filter("plain") == "name='plain'"
    assert name_filter("it's") == 'name="it\'s"'
    assert name_filter("a'b\"c") == "name LIKE 'a_b_c'"


def test_local_artifacts_resolver(tmp_path: Path) -> None:
    resolve = local_artifacts_resolver(tmp_path)
    assert resolve("mlflow-artifacts:/1/models/m-1/artifacts") == str(
        tmp_path.resolve() / "1/models/m-1/artifacts"
    )
    assert resolve("s3://bucket/x") == "s3://bucket/x"
    with pytest.raises(NotFoundError):
        resolve("mlflow-artifacts:/../../etc")
