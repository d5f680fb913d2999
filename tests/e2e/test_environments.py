"""Each version runs in its own uv-built environment, made from its logged dependencies."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.models import log_version_reporter
from tests.support.registry import UserRegistry, user_registry
from tests.support.server import ADMIN_TOKEN, RegServeProcess, wait_for

pytestmark = pytest.mark.e2e

ROW = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
MLFLOW = f"mlflow=={mlflow.__version__}"
MLFLOW_2 = "mlflow==2.22.0"
UV = str(Path(sys.executable).parent / "uv")


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RegServeProcess, UserRegistry]]:
    server = RegServeProcess(tmp_path_factory.mktemp("envs") / "data", env_manager="virtualenv")
    server.start()
    with pytest.MonkeyPatch.context() as mp, user_registry(mp, server.url, ADMIN_TOKEN) as reg:
        yield server, reg
    server.close()


def _answer(server: RegServeProcess, name: str, ref: str) -> str:
    r = server.score(name, ref, {"dataframe_records": [ROW]})
    assert r.status_code == 200, r.text
    return str(r.json()["predictions"][0])


def _events(server: RegServeProcess, name: str, version: str) -> list[dict[str, str]]:
    return [e for e in server.events(name) if e.get("endpoint_version_name") == version]


def test_two_scikit_learn_releases_side_by_side(env: tuple[RegServeProcess, UserRegistry]) -> None:
    server, _ = env
    name = "sklearn-versions"
    old = log_version_reporter(name, [MLFLOW, "scikit-learn==1.5.2"])
    new = log_version_reporter(name, [MLFLOW, "scikit-learn==1.6.1"])
    server.enable(name)
    v_old = server.wait_version_state(name, old, "VERSION_STATE_READY", timeout=600)
    v_new = server.wait_version_state(name, new, "VERSION_STATE_READY", timeout=600)
    assert v_old["environment"] != v_new["environment"]
    assert _answer(server, name, old).startswith("sklearn=1.5.2 ")
    assert _answer(server, name, new).startswith("sklearn=1.6.1 ")
    built = [e["event_type"] for e in _events(server, name, old)]
    assert "ENV_BUILT" in built or "ENV_REUSED" in built

    # a third version with the same requirements as the first: no second build
    same = log_version_reporter(name, ["scikit-learn==1.5.2", MLFLOW])
    v_same = server.wait_version_state(name, same, "VERSION_STATE_READY", timeout=300)
    assert v_same["environment"] == v_old["environment"]
    types = [e["event_type"] for e in _events(server, name, same)]
    assert "ENV_REUSED" in types
    assert "ENV_BUILT" not in types
    _check_environment_metrics(server, name)
    envs_dir = server.data_dir / "envs"
    assert (envs_dir / v_old["environment"] / "bin" / "python").exists()
    # compiled at build time: a worker imports scikit-learn from bytecode, not from source
    compiled = envs_dir.glob(
        f"{v_old['environment']}/lib/python*/site-packages/sklearn/__pycache__/*.pyc"
    )
    assert next(compiled, None) is not None
    assert not list(envs_dir.glob("*.tmp-*"))  # no half-built environment left behind

    # a model logged with the Anaconda defaults channel is served, with a warning event
    warned = log_version_reporter(name, [MLFLOW, "scikit-learn==1.5.2"], ["defaults"])
    server.wait_version_state(name, warned, "VERSION_STATE_READY", timeout=300)
    warnings = [
        e["message"] for e in _events(server, name, warned) if e["event_type"] == "ENV_WARNING"
    ]
    assert any("'defaults' channel" in w and "license" in w for w in warnings), warnings

    # a restart rebuilds, reuses and starts nothing: every worker is adopted as it runs
    before = {e["timestamp"] for e in server.events(name)}
    pids = {v: server.versions(name)[v]["worker_pid"] for v in (old, new, same, warned)}
    server.stop()
    server.start()
    for version in pids:
        state = server.wait_version_state(name, version, "VERSION_STATE_READY", timeout=300)
        assert state["worker_pid"] == pids[version]
    after = [e["event_type"] for e in server.events(name) if e["timestamp"] not in before]
    assert "ENV_BUILT" not in after
    assert "ENV_REUSED" not in after
    assert "VERSION_READY" not in after
    assert after.count("WORKER_ADOPTED") == len(pids)

    # stopped for good (SIGINT), started again: the cache serves every version without a build
    before = {e["timestamp"] for e in server.events(name)}
    server.stop(signal.SIGINT)
    server.start()
    for version in (old, new, same):
        server.wait_version_state(name, version, "VERSION_STATE_READY", timeout=300)
    after = [e["event_type"] for e in server.events(name) if e["timestamp"] not in before]
    assert "ENV_BUILT" not in after
    assert after.count("ENV_REUSED") >= 3


def _check_environment_metrics(server: RegServeProcess, name: str) -> None:
    """/metrics counts the builds and reuses the events report (three versions so far)."""
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(server.client.get("/metrics").text)
        for s in family.samples
    }
    built = samples.get(("regserve_environments_total", (("outcome", "built"),)), 0)
    reused = samples.get(("regserve_environments_total", (("outcome", "reused"),)), 0)
    events = [e["event_type"] for e in server.events(name)]
    assert (built, reused) == (events.count("ENV_BUILT"), events.count("ENV_REUSED"))
    assert built + reused == 3
    assert reused >= 1
    assert samples[("regserve_environment_build_seconds_count", ())] == built


def test_an_unresolvable_requirement_fails_that_version_only(
    env: tuple[RegServeProcess, UserRegistry],
) -> None:
    server, _ = env
    name = "resolver-failure"
    good = log_version_reporter(name, [MLFLOW, "scikit-learn==1.5.2"])
    bad = log_version_reporter(name, [MLFLOW, "regserve-no-such-package-xyz==1.0"])
    server.enable(name)
    failed = server.wait_version_state(name, bad, "VERSION_STATE_FAILED", timeout=600)
    assert "regserve-no-such-package-xyz" in failed["state_message"]
    assert "uv pip install failed" in failed["state_message"]  # the installer's own words follow
    server.wait_version_state(name, good, "VERSION_STATE_READY", timeout=600)
    assert _answer(server, name, good).startswith("sklearn=1.5.2 ")
    assert server.status(name)["state"] == "ENDPOINT_STATE_READY"
    body = {"registered_model_name": name, "endpoint_version_name": bad}
    logs = server.api("POST", "get-version-logs", json=body)
    assert "regserve-no-such-package-xyz" in logs.json()["logs"]


@pytest.fixture(scope="module")
def mlflow2_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A client environment holding MLflow 2.x, as a team that has not upgraded would have."""
    venv = tmp_path_factory.mktemp("mlflow2-client") / "venv"
    subprocess.run(
        [UV, "venv", "--python", sys.executable, str(venv)], check=True, capture_output=True
    )
    subprocess.run(
        [
            UV,
            "pip",
            "install",
            "--python",
            str(venv / "bin" / "python"),
            MLFLOW_2,
            "scikit-learn==1.5.2",
            "pandas<3",
        ],
        check=True,
        capture_output=True,
        timeout=900,
    )
    return venv / "bin" / "python"


LOG_WITH_MLFLOW_2 = """
import sys, mlflow, pandas as pd
from mlflow.models import infer_signature
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
assert mlflow.__version__.startswith("2."), mlflow.__version__
data = load_iris()
cols = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
frame = pd.DataFrame(data.data, columns=cols)
model = LogisticRegression(max_iter=300).fit(frame, data.target)
with mlflow.start_run():
    mlflow.sklearn.log_model(
        model, artifact_path="model", registered_model_name=sys.argv[1],
        signature=infer_signature(frame, model.predict(frame)), input_example=frame.head(2),
        pip_requirements=["mlflow==2.22.0", "scikit-learn==1.5.2", "pandas<3"],
    )
"""


def test_a_model_logged_with_mlflow_2_beside_one_logged_with_3(
    env: tuple[RegServeProcess, UserRegistry], mlflow2_python: Path
) -> None:
    server, _ = env
    name = "two-mlflows"
    child_env = {
        "MLFLOW_TRACKING_URI": server.url,
        "MLFLOW_TRACKING_TOKEN": ADMIN_TOKEN,
        "PATH": "/usr/bin:/bin",
    }
    subprocess.run(
        [str(mlflow2_python), "-c", LOG_WITH_MLFLOW_2, name],
        env=child_env,
        check=True,
        capture_output=True,
        timeout=300,
    )
    v3 = log_version_reporter(name, [MLFLOW, "scikit-learn==1.5.2"])
    server.enable(name)
    server.wait_version_state(name, "1", "VERSION_STATE_READY", timeout=600)
    server.wait_version_state(name, v3, "VERSION_STATE_READY", timeout=600)
    r = server.score(name, "1", {"dataframe_records": [ROW]})
    assert r.status_code == 200, r.text
    assert r.json() == {"predictions": [0]}
    assert _answer(server, name, v3).endswith(f"mlflow={mlflow.__version__}")
    reused_or_built = [
        e["message"]
        for e in _events(server, name, "1")
        if e["event_type"] in ("ENV_BUILT", "ENV_REUSED")
    ]
    assert reused_or_built
    assert "MLflow 2.22.0" in reused_or_built[0]
    # the same protocol errors from the MLflow 2.x worker
    r = server.score(name, "1", {"dataframe_records": [{"sepal_length": "x"}]})
    assert r.status_code == 400
    assert r.json()["error_code"] in ("BAD_REQUEST", "INVALID_PARAMETER_VALUE")
    wait_for(lambda: server.status(name)["state"] == "ENDPOINT_STATE_READY", 30, "endpoint READY")


MLFLOW_1 = ["mlflow==1.30.1", "scikit-learn==1.2.2", "numpy<2"]


def _python_310() -> Path:
    from regserve.envs.interpreters import pick_interpreter

    interpreter, _ = pick_interpreter("3.10", allow_nearest=False)
    if interpreter is None:
        from tests.conftest import require_service

        require_service("MLflow 1.30 needs Python 3.10, which is not installed here")
    assert interpreter is not None
    return interpreter.path


@pytest.fixture(scope="module")
def mlflow1_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A client environment holding MLflow 1.30 (on Python 3.10, which MLflow 1.x supports)."""
    venv = tmp_path_factory.mktemp("mlflow1-client") / "venv"
    subprocess.run(
        [UV, "venv", "--python", str(_python_310()), str(venv)], check=True, capture_output=True
    )
    subprocess.run(
        [
            UV,
            "pip",
            "install",
            "--python",
            str(venv / "bin" / "python"),
            *MLFLOW_1,
            "setuptools<70",
        ],
        check=True,
        capture_output=True,
        timeout=900,
    )
    return venv / "bin" / "python"


LOG_WITH_MLFLOW_1 = """
import sys, warnings, mlflow, pandas as pd
warnings.simplefilter("ignore")
from mlflow.models.signature import infer_signature
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
assert mlflow.__version__.startswith("1."), mlflow.__version__
data = load_iris()
cols = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
frame = pd.DataFrame(data.data, columns=cols)
model = LogisticRegression(max_iter=300).fit(frame, data.target)
with mlflow.start_run():
    mlflow.sklearn.log_model(
        model, artifact_path="model", registered_model_name=sys.argv[1],
        signature=infer_signature(frame, model.predict(frame)),
        pip_requirements=sys.argv[2:],
    )
"""

SPLIT = {"columns": list(ROW), "data": [list(ROW.values())]}
V1_CASES = [
    ("split", "application/json; format=pandas-split", SPLIT),
    ("records", "application/json; format=pandas-records", [ROW]),
    ("inferred-records", "application/json", [ROW, ROW]),
    ("inferred-split", "application/json", SPLIT),
    ("csv", "text/csv", "sepal_length,sepal_width,petal_length,petal_width\n5.1,3.5,1.4,0.2\n"),
    ("bad-json", "application/json", "{not json"),
    ("missing-column", "application/json; format=pandas-records", [{"sepal_length": 1.0}]),
    ("unknown-format", "application/json; format=bogus", SPLIT),
    ("latin-1", "application/json; charset=latin-1", SPLIT),
    ("text-plain", "text/plain", "x"),
]


def test_a_model_pinned_to_mlflow_1_speaks_the_1x_format(
    env: tuple[RegServeProcess, UserRegistry], mlflow1_python: Path, tmp_path: Path
) -> None:
    import json

    import httpx

    from tests.support.conformance import normalize_message
    from tests.support.mlflow_serve import mlflow_models_serve

    server, _ = env
    name = "mlflow-one"
    child_env = {
        "MLFLOW_TRACKING_URI": server.url,
        "MLFLOW_TRACKING_TOKEN": ADMIN_TOKEN,
        "PATH": "/usr/bin:/bin",
    }
    subprocess.run(
        [str(mlflow1_python), "-c", LOG_WITH_MLFLOW_1, name, *MLFLOW_1],
        env=child_env,
        check=True,
        capture_output=True,
        timeout=300,
    )
    server.enable(name)
    server.wait_version_state(name, "1", "VERSION_STATE_READY", timeout=900)
    built = [
        e["message"]
        for e in _events(server, name, "1")
        if e["event_type"] in ("ENV_BUILT", "ENV_REUSED")
    ]
    assert "MLflow 1.30.1" in built[0]

    model_dir = server.model_dir(name, "1")
    with mlflow_models_serve(model_dir, tmp_path, python=mlflow1_python) as reference:
        for case_id, content_type, payload in V1_CASES:
            body = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
            headers = {"Content-Type": content_type}
            theirs = httpx.post(f"{reference}/invocations", content=body, headers=headers)
            ours = server.client.post(f"/model/{name}/1/invocations", content=body, headers=headers)
            assert ours.status_code == theirs.status_code, (case_id, ours.text, theirs.text)
            if theirs.status_code == 200:
                assert ours.json() == theirs.json() == [0] * len(ours.json()), case_id
                continue
            mine = ours.json()
            if theirs.headers["content-type"].startswith("application/json"):
                expected = theirs.json()
                assert mine["error_code"] == expected["error_code"], case_id
                assert normalize_message(mine["message"]) == normalize_message(
                    expected["message"]
                ), case_id
            else:  # MLflow sends 415s as text/plain; regserve as JSON with the same text
                assert mine == {"error_code": "UNSUPPORTED_MEDIA_TYPE", "message": theirs.text}
