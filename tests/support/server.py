"""A real ``regserve up`` subprocess for end-to-end tests, and a small client for it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from bench.servers import open_way_to

from regserve.controller.model_files import local_model_path
from regserve.registry.models import VersionInfo
from tests.support.timing import scaled

ADMIN_TOKEN = "rs-test-admin-token"
API = "/api/2.0/preview/mlflow/endpoints"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    """Poll until ``predicate`` returns something truthy; fail with ``what`` otherwise. The
    timeout is scaled by ``REGSERVE_TEST_TIME_SCALE``."""
    timeout = scaled(timeout)
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}; last value: {last!r}")


class RegServeProcess:
    """Starts, stops, kills and restarts ``regserve up`` on a data dir of the test's."""

    def __init__(self, data_dir: Path, port: int | None = None, **settings: str) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = data_dir.parent / f"regserve-{self.port}.log"
        self.env = {
            **os.environ,
            "REGSERVE_ADMIN_TOKEN": ADMIN_TOKEN,
            "REGSERVE_POLL_INTERVAL": "1",
            "REGSERVE_RESTART_BACKOFF_BASE": "0.5",
            # The serving core's tests run workers in regserve's interpreter; the tests of
            # per-version environments (tests/e2e/test_environments.py) ask for virtualenv.
            "REGSERVE_ENV_MANAGER": "local",
            # Workers a test leaves behind (SIGTERM keeps them for adoption) do not linger.
            "REGSERVE_ORPHAN_TIMEOUT": "120",
            # A server a module shares may outlive the 600 s default with a version nobody
            # scores; only the idle tests (tests/e2e/test_idle.py) ask for idling.
            "REGSERVE_IDLE_TIMEOUT": "0",
            **{f"REGSERVE_{k.upper()}": v for k, v in settings.items()},
        }
        self.env.pop("MLFLOW_TRACKING_URI", None)
        self.process: subprocess.Popen[bytes] | None = None
        self.client = httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30
        )

    def start(self, *args: str, timeout: float = 90, ready: bool = True) -> RegServeProcess:
        """Start and wait until /health says ready (200), or with ``ready=False`` only until
        it listens (/health answers, 503 while the registry starts)."""
        open_way_to(self.data_dir)
        cmd = [
            sys.executable,
            "-m",
            "regserve.cli",
            "up",
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
            *args,
        ]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        expected = (200,) if ready else (200, 503)
        what = f"regserve on {self.url} (log: {self.log_path})"
        wait_for(lambda: self._health_status() in expected, timeout, what)
        return self

    def _health_status(self) -> int | None:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"regserve exited: {self.log_path.read_text()[-3000:]}")
        try:
            return httpx.get(f"{self.url}/health", timeout=2).status_code
        except httpx.HTTPError:
            return None

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """SIGTERM (the default) leaves the workers for the next start to adopt; SIGINT stops
        them too; SIGKILL is a crash."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def close(self) -> None:
        self.stop(signal.SIGINT)  # for good: the workers too
        self.client.close()

    def health(self) -> dict[str, Any]:
        return dict(httpx.get(f"{self.url}/health", timeout=30).json())

    # -- the control API -----------------------------------------------------------------------

    def api(self, method: str, route: str, **kwargs: Any) -> httpx.Response:
        return self.client.request(method, f"{API}/{route}", **kwargs)

    def enable(self, name: str) -> httpx.Response:
        return self.api("POST", "enable", json={"registered_model_name": name})

    def disable(self, name: str) -> httpx.Response:
        return self.api("POST", "disable", json={"registered_model_name": name})

    def versions(self, name: str) -> dict[str, dict[str, Any]]:
        r = self.api("GET", "list-versions", params={"registered_model_name": name})
        if r.status_code != 200:
            return {}
        return {v["endpoint_version_name"]: v for v in r.json()["endpoint_versions"]}

    def status(self, name: str) -> dict[str, Any]:
        r = self.api("GET", "get-status", params={"registered_model_name": name})
        assert r.status_code == 200, r.text
        return dict(r.json()["endpoint_status"])

    def events(self, name: str) -> list[dict[str, Any]]:
        r = self.api("GET", "get-event-history", params={"registered_model_name": name})
        assert r.status_code == 200, r.text
        return list(r.json()["events"])

    def wait_version_state(
        self, name: str, version: str, state: str, timeout: float = 120
    ) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            v = self.versions(name).get(version)
            return v if v and v["state"] == state else None

        return dict(wait_for(check, timeout, f"{name} v{version} to be {state}"))

    def model_dir(self, name: str, version: str) -> Path:
        """regserve's local copy of a version's files (the hosted registry's version)."""
        r = self.client.get(
            "/api/2.0/mlflow/model-versions/get", params={"name": name, "version": version}
        )
        assert r.status_code == 200, r.text
        mv = r.json()["model_version"]
        info = VersionInfo(
            name=name,
            version=str(mv["version"]),
            stage=mv.get("current_stage") or "None",
            status=mv.get("status") or "READY",
            aliases=(),
            source=mv.get("source") or "",
            run_id=mv.get("run_id") or None,
            creation_timestamp=int(mv["creation_timestamp"]),
        )
        return local_model_path(self.data_dir / "models", info)

    def score(self, name: str, ref: str, payload: Any, **kwargs: Any) -> httpx.Response:
        return self.client.post(f"/model/{name}/{ref}/invocations", json=payload, **kwargs)
