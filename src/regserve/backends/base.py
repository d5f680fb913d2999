"""The contract between the controller and a backend."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from regserve.errors import RegServeError
from regserve.router import Target
from regserve.states import VersionState
from regserve.store import ClusterConfig

if TYPE_CHECKING:  # the local package imports this module
    from regserve.backends.local.kept_logs import KeptLog

__all__ = [
    "Adopted",
    "Backend",
    "ClusterUpdateError",
    "VersionEvent",
    "VersionListener",
    "VersionSpec",
]


class ClusterUpdateError(RegServeError):
    """A running cluster could not be moved to a new config; the old one keeps serving."""

    error_code = "CLUSTER_UPDATE_FAILED"


@dataclass(frozen=True)
class VersionSpec:
    """One model version to run: where its downloaded model lives."""

    model_name: str
    version: str
    model_path: Path
    python: Path | None = None
    """The interpreter to run the worker with; None means regserve's own (env-manager local)."""
    worker_path: Path | None = None
    """Put on PYTHONPATH when ``python`` is set: where the worker package is for that env."""
    env_key: str | None = None
    """The environment ``python`` belongs to (``--env-manager virtualenv``), for the records."""
    pointed_at: bool = False
    """A stage or an alias points at it: its workers start before the model's other versions'
    when starts wait for their turn (the local backend's ``StartQueue``)."""
    registered_at: int = 0
    """When it was registered (ms): among those waiting, newer versions start first."""
    called_at: int = 0
    """The minute (ms) it was last called, as the store's traffic aggregates say (0: not
    lately): such versions start after those pointed at, before the others."""


@dataclass(frozen=True)
class Adopted:
    """A worker a previous regserve process started, now serving for this one."""

    pid: int | None
    """The worker's process (None where a version has no one process: on Ray)."""
    env_key: str | None = None
    described: str = ""
    """What was adopted, in a few words, where there is no pid (on Ray, the application)."""


@dataclass(frozen=True)
class VersionEvent:
    """A change a backend reports about a deployed version.

    ``event_type`` and ``message`` go to the event history
    (``event_type`` may be empty when only the state changed).
    """

    model_name: str
    version: str
    state: VersionState
    state_message: str
    event_type: str = ""
    message: str = ""
    worker_pid: int | None = None


VersionListener = Callable[[VersionEvent], None]


class Backend(Protocol):
    """Runs the versions of served models. All methods are called from the event loop."""

    async def start(self) -> None:
        """Prepare the backend: find the workers a previous process left (to adopt them)."""

    async def environment_settled(self) -> None:
        """Return once starting the backend no longer changes this process's environment (a
        local Ray instance hides regserve's secrets from it while it starts the node processes
        that run the replicas). The leader calls it before the hosted registry puts its
        configuration there, which other threads then read."""

    async def prewarm(self, model_name: str, flavors: Mapping[str, object]) -> None:
        """Prepare what starting the model's workers needs before its first version is
        deployed, knowing only its flavors (``MLmodel``'s); nothing when nothing can be."""

    async def close(self, keep_workers: bool = False) -> None:
        """Stop every worker; with ``keep_workers``, leave them running for the next
        process to adopt (they stop by themselves if none comes)."""

    async def adopt(self, model_name: str, version: str, model_path: Path) -> Adopted | None:
        """Serve the version from a worker a previous process left, if one runs ``model_path``
        and answers: it is READY at once, without a new process. None: deploy it as usual."""

    async def release_leftovers(self) -> None:
        """Stop the workers a previous process left that nobody adopted."""

    async def start_cluster(self, model_name: str, config: ClusterConfig) -> None:
        """Create the model's serving cluster (kept while serving is enabled), or move a
        running one to ``config``: where the change needs new workers, they start beside the
        running ones and take over once READY. Raises :class:`ClusterUpdateError` when they
        did not (the running cluster keeps serving with its old config)."""

    async def stop_cluster(self, model_name: str) -> None:
        """Stop every version of the model and release the cluster."""

    def describe_cluster(self, model_name: str) -> str:
        """The cluster's resource limits in a few words, for its events."""

    def forget_model(self, model_name: str) -> None:
        """The registered model is gone (its cluster stopped): what the backend keeps of it on
        this machine goes too (its user and home, its logs), so that a model created later
        under the name starts with none of it."""

    def isolation_warning(self) -> str:
        """What a model's code can reach that it should not, when the backend cannot keep it
        from that here ("" when it can): said in an event when a cluster starts."""

    async def deploy(self, spec: VersionSpec) -> None:
        """Start serving a version; progress is reported to the listener."""

    async def undeploy(self, model_name: str, version: str) -> None:
        """Stop a version after its in-flight requests finish."""

    def target(self, model_name: str, version: str) -> Target | None:
        """How to reach a READY version, or None."""

    def deployed(self, model_name: str) -> set[str]:
        """Versions of the model that are deployed (in any state)."""

    def log_file(self, model_name: str, version: str) -> Path:
        """The version's log file, where environment builds write too."""

    def read_logs(self, model_name: str, version: str) -> str:
        """The newest lines of the version's log (blocking; call it from a thread)."""

    def kept_log(self, model_name: str, version: str) -> KeptLog | None:
        """The log a version left when it stopped being served (``backends/local/kept_logs.py``);
        None when it left none (blocking; call it from a thread)."""

    def log_times(self, model_name: str) -> dict[str, int]:
        """The model's versions that have a log here (served, or kept since they stopped),
        and when each was last written (ms; blocking: call it from a thread)."""
