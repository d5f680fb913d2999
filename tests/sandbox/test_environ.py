"""What a worker's environment holds: the allow-list, the model's own variables, no secret."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from regserve.sandbox.environ import (
    ENVIRON_LOCK,
    ModelEnvError,
    for_builds,
    hidden_secrets,
    installer_environment,
    read_model_env,
    refused_name,
    worker_environment,
)

SERVER = {
    "PATH": "/root/.pyenv/shims:/usr/bin",
    "HOME": "/root",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "TZ": "UTC",
    "REGSERVE_ADMIN_TOKEN": "rs-secret",
    "MLFLOW_TRACKING_TOKEN": "mlflow-secret",
    "AWS_SECRET_ACCESS_KEY": "aws-secret",
    "_MLFLOW_SERVER_BACKEND_STORE_URI": "postgresql://u:pw@db/mlflow",
    "OMP_NUM_THREADS": "2",
    "UV_INDEX_URL": "https://index.example/simple",
}


def _env(**kwargs: object) -> dict[str, str]:
    defaults: dict[str, object] = {
        "home": Path("/data/homes/m-1"),
        "user": "regserve-61200",
        "bin_dir": Path("/env/bin"),
        "pythonpath": None,
        "passed": (),
        "model_env": {},
        "source": SERVER,
    }
    return worker_environment(**{**defaults, **kwargs})  # type: ignore[arg-type]


def test_a_worker_gets_only_the_allow_list() -> None:
    env = _env()
    assert env == {
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "TZ": "UTC",
        "PATH": "/env/bin:/usr/local/bin:/usr/bin:/bin",
        "HOME": "/data/homes/m-1",
        "TMPDIR": "/data/homes/m-1/tmp",
        "USER": "regserve-61200",
        "LOGNAME": "regserve-61200",
        "PYTHONUNBUFFERED": "1",
    }


def test_passed_names_and_the_model_env_come_through_but_never_a_secret() -> None:
    env = _env(
        passed=("OMP_NUM_THREADS", "REGSERVE_ADMIN_TOKEN", "MLFLOW_TRACKING_TOKEN"),
        model_env={"MODEL_API_KEY": "k"},
        pythonpath=Path("/envs/_worker/abc"),
    )
    assert env["OMP_NUM_THREADS"] == "2"
    assert env["MODEL_API_KEY"] == "k"
    assert env["PYTHONPATH"] == "/envs/_worker/abc"
    assert "REGSERVE_ADMIN_TOKEN" not in env
    assert "MLFLOW_TRACKING_TOKEN" not in env
    assert not [v for v in env.values() if "secret" in v]


@pytest.mark.parametrize(
    ("name", "refused"),
    [
        ("OMP_NUM_THREADS", False),
        ("HF_TOKEN", False),
        ("REGSERVE_ADMIN_TOKEN", True),
        ("regserve_admin_token", True),
        ("MLFLOW_TRACKING_TOKEN", True),
        ("LD_PRELOAD", True),
        ("PYTHONPATH", True),
        ("PATH", True),
        ("1BAD", True),
        ("A-B", True),
    ],
)
def test_which_names_configuration_may_pass(name: str, refused: bool) -> None:
    assert (refused_name(name) is not None) is refused


def test_the_model_env_file(tmp_path: Path) -> None:
    assert read_model_env(tmp_path, "no file") == {}
    (tmp_path / "my%20model.env").write_text(
        "# a comment\n\nAPI_KEY=abc=def\nexport REGION = 'eu-west-1'\nQUOTED=\"x y\"\n"
    )
    assert read_model_env(tmp_path, "my model") == {
        "API_KEY": "abc=def",
        "REGION": "eu-west-1",
        "QUOTED": "x y",
    }
    (tmp_path / "bad.env").write_text("GOOD=1\nREGSERVE_ADMIN_TOKEN=steal\n")
    with pytest.raises(ModelEnvError, match="line 2: 'REGSERVE_ADMIN_TOKEN'"):
        read_model_env(tmp_path, "bad")
    (tmp_path / "broken.env").write_text("NO_EQUALS\n")
    with pytest.raises(ModelEnvError, match="expected KEY=VALUE"):
        read_model_env(tmp_path, "broken")


def test_installers_keep_their_settings_and_lose_the_secrets() -> None:
    env = installer_environment(SERVER)
    assert env["PATH"] == SERVER["PATH"]
    assert env["HOME"] == "/root"
    assert env["UV_INDEX_URL"] == SERVER["UV_INDEX_URL"]
    assert "REGSERVE_ADMIN_TOKEN" not in env
    assert "_MLFLOW_SERVER_BACKEND_STORE_URI" not in env
    assert for_builds(SERVER) == {"UV_INDEX_URL": SERVER["UV_INDEX_URL"]}


def test_secrets_are_hidden_from_what_starts_meanwhile(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REGSERVE_ADMIN_TOKEN", "rs-secret")
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "t")
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    with hidden_secrets() as hidden:
        assert "REGSERVE_ADMIN_TOKEN" not in os.environ
        assert "MLFLOW_TRACKING_TOKEN" not in os.environ
        assert os.environ["OMP_NUM_THREADS"] == "2"
        assert {"REGSERVE_ADMIN_TOKEN", "MLFLOW_TRACKING_TOKEN"} <= set(hidden)
    assert os.environ["REGSERVE_ADMIN_TOKEN"] == "rs-secret"


def test_no_thread_configures_the_environment_while_secrets_are_hidden(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The hosted registry writes its configuration under ENVIRON_LOCK: while a local Ray
    instance starts with the secrets hidden, that write waits, so Ray's node processes never
    copy it (found by test_a_ray_replica_sees_no_server_secret, when the registry started in a
    thread beside Ray's start)."""
    monkeypatch.setenv("_MLFLOW_SERVER_FILE_STORE", "")  # put back as it was after the test
    monkeypatch.delenv("_MLFLOW_SERVER_FILE_STORE")
    seen_while_hidden: list[str | None] = []
    written = threading.Event()

    def configure() -> None:
        with ENVIRON_LOCK:
            os.environ["_MLFLOW_SERVER_FILE_STORE"] = "sqlite:///mlflow.db"
        written.set()

    with hidden_secrets():
        writer = threading.Thread(target=configure)
        writer.start()
        assert not written.wait(0.3)  # waits for the hidden environment to be put back
        seen_while_hidden.append(os.environ.get("_MLFLOW_SERVER_FILE_STORE"))
    writer.join(5)
    assert written.is_set()
    assert seen_while_hidden == [None]
    assert os.environ["_MLFLOW_SERVER_FILE_STORE"] == "sqlite:///mlflow.db"
