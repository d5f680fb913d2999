"""Every conformance case, sent to `mlflow models serve` and to a worker on the same model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conformance_cases import CASES, Case
from tests.support.conformance import Answer, assert_conformant
from tests.support.mlflow_serve import mlflow_models_serve

from .conftest import WireClient, WorkerProcess

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def mlflow_server(iris_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with mlflow_models_serve(iris_model_dir, tmp_path_factory.mktemp("mlflow-serve")) as url:
        yield url


def _mlflow_answer(url: str, case: Case) -> Answer:
    headers = {} if case.content_type is None else {"Content-Type": case.content_type}
    # A fresh connection per case: MLflow drops the connection after its 500s.
    response = httpx.post(url + "/invocations", content=case.body, headers=headers, timeout=60)
    return Answer.from_httpx(response)


def test_the_table_is_large_enough() -> None:
    assert len(CASES) >= 45
    assert len({case.case_id for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[case.case_id for case in CASES])
def test_worker_answers_like_mlflow(
    case: Case, mlflow_server: str, worker: WorkerProcess, client: WireClient
) -> None:
    theirs = _mlflow_answer(mlflow_server, case)
    ours = client.call(case.content_type, case.body)
    assert_conformant(case, Answer(*ours), theirs)
    if case.diverges is not None:
        assert theirs.status != case.diverges, f"MLflow now answers {case.case_id} well"
