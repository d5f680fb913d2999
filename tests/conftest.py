"""Shared fixtures, the rule that a missing service fails in CI instead of skipping, and the
rule that no process outlives the tests (``tests/support/leftovers.py``)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from regserve.store import StateStore
from tests.support.leftovers import ProcessGuard
from tests.support.timing import scaled


def require_service(reason: str) -> None:
    """Skip a test whose service is missing here; fail instead when CI demands every service."""
    if os.environ.get("REGSERVE_TEST_REQUIRE_SERVICES"):
        pytest.fail(f"required service missing in CI: {reason}")
    pytest.skip(reason)


_guard: ProcessGuard | None = None


def pytest_configure(config: pytest.Config) -> None:
    global _guard
    if not hasattr(config, "workerinput"):  # once per session (not in an xdist worker)
        _guard = ProcessGuard()


@pytest.hookimpl(trylast=True)  # after xdist has stopped its workers
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Every process the tests started has stopped by now (session fixtures are torn down);
    one that has not is killed, named, and fails the run."""
    if _guard is None:
        return
    left = _guard.wait_and_stop(grace=scaled(20))
    _guard.close()
    if left:
        lines = "\n".join(f"  {pid}: {cmd}" for pid, cmd in sorted(left.items()))
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        message = f"{len(left)} processes outlived the tests ({_guard.how}); killed:\n{lines}"
        if reporter is not None:
            reporter.write_line(message, red=True)
        else:
            print(message)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadfile`` the costliest file first, ``tests/ui`` as one unit
    (``tests/support/scheduling.py``)."""
    if config.getvalue("dist") != "loadfile":
        return None
    from tests.support.scheduling import CostliestFirstScheduling

    return CostliestFirstScheduling(config, log)


@pytest.fixture(autouse=True)
def _mlflow_server_is_left_to_the_registry_tests(request: pytest.FixtureRequest) -> Iterator[None]:
    """Importing ``mlflow.server`` fixes its configuration for the whole process: a test that
    does it in-process (not in a child) breaks the hosted registry's tests (tests/registry)
    run later in the same process, whichever process pytest-xdist gives them."""
    before = "mlflow.server" in sys.modules
    yield
    hosting = request.path.parent.name == "registry"
    if not before and not hosting and "mlflow.server" in sys.modules:
        pytest.fail("this test imported mlflow.server in the test process: do it in a child")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    """A migrated SQLite state store of the test's own (modules that test every store
    backend define their own, parametrized)."""
    s = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    s.migrate()
    yield s
    s.close()
