"""ResourceLimits: which mechanism enforces node types on this machine, and each model's
cluster limits (one generation per node type the cluster has run with)."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from regserve.backends.local.limits.affinity import AffinityCluster, affinity_available
from regserve.backends.local.limits.budget import (
    Budget,
    ClusterLimits,
    LimitsUnavailableError,
    Unlimited,
)
from regserve.backends.local.limits.cgroups import CgroupHost, find_cgroup_v1, find_cgroup_v2
from regserve.nodes import NodeTypes
from regserve.worker.text import log_safe

__all__ = ["ResourceLimits"]

_log = logging.getLogger("regserve.limits")
_MAX_DIR_NAME = 100


@dataclass
class _Model:
    current: ClusterLimits
    node_type_id: str
    generation: int
    retired: list[ClusterLimits] = field(default_factory=list)
    placed: dict[int, ClusterLimits] = field(default_factory=dict)
    """Each running worker's limits (which generation it was started in)."""


class ResourceLimits:
    """The limit mechanism of this machine (chosen by ``start``) and the clusters' limits.

    ``mode`` is ``REGSERVE_RESOURCE_LIMITS``: auto, cgroup2, cgroup1, process or off.
    """

    def __init__(
        self, node_types: NodeTypes, data_dir: Path, mode: str = "auto", max_pids: int | None = None
    ) -> None:
        self._node_types = node_types
        self._max_pids = max_pids
        self._key = hashlib.sha1(str(data_dir).encode()).hexdigest()[:12]
        self._mode = mode
        self._cgroups: CgroupHost | None = None
        self.mechanism = "off"
        self._models: dict[str, _Model] = {}

    # -- the machine -------------------------------------------------------------------------

    def start(self) -> None:
        """Pick the mechanism (LimitsUnavailableError when the one asked for is missing),
        remove the empty cgroups a previous process left, and log what was chosen."""
        self._cgroups, self.mechanism = self._choose()
        if self._cgroups is not None:
            removed = self._cgroups.clean_stale()
            if removed:
                _log.info("removed %d cgroups left by a previous regserve process", removed)
            _log.info("node type limits: %s", self._cgroups.describe())
        elif self.mechanism == "off":
            _log.warning("node type limits: off; node types are not enforced")
        else:
            _log.warning(
                "node type limits: %s (no writable cgroups here); the memory limit holds for "
                "each worker, not for the cluster as a whole",
                self.mechanism,
            )

    def probe(self) -> str:
        """The mechanism ``start`` would choose (leaving nothing behind)."""
        cgroups, mechanism = self._choose()
        if cgroups is not None:
            cgroups.remove_bases()
        return mechanism

    def _choose(self) -> tuple[CgroupHost | None, str]:
        mode = self._mode
        if mode == "off":
            return None, "off"
        for wanted, find, what in (
            ("cgroup2", find_cgroup_v2, "cgroup v2 with cpu and memory delegated"),
            ("cgroup1", find_cgroup_v1, "writable cgroup v1 cpu and memory controllers"),
        ):
            if mode not in ("auto", wanted):
                continue
            found = find(self._key)
            if found is not None:
                return found, found.name
            if mode == wanted:
                raise _missing(what)
        if affinity_available():
            return None, AffinityCluster.name
        if mode == "process":
            raise _missing("sched_setaffinity and prlimit")
        return None, "off"

    # -- clusters ----------------------------------------------------------------------------

    def create(self, model: str, node_type_id: str, generation: int) -> ClusterLimits:
        """The limits of one generation of ``model``'s cluster (blue-green: several at once)."""
        budget = Budget.of(self._node_types.get_or_default(node_type_id), self._max_pids)
        if not budget.limited:
            return Unlimited(budget, f"no limits ({node_type_id} is the whole machine)")
        if self.mechanism == "off":
            return Unlimited(budget, "no limits (REGSERVE_RESOURCE_LIMITS=off or unavailable)")
        if self._cgroups is not None:
            return self._cgroups.create(_dir_name(model), generation, budget)
        return AffinityCluster(model, budget)

    def open(self, model: str, node_type_id: str) -> ClusterLimits:
        """The model's current limits; a new generation when its node type changed (the old
        one keeps its workers until they exit, and is closed then)."""
        known = self._models.get(model)
        if known is not None and known.node_type_id == node_type_id:
            return known.current
        generation = known.generation + 1 if known is not None else 1
        limits = self.create(model, node_type_id, generation)
        retired = [*known.retired, known.current] if known is not None else []
        placed = known.placed if known is not None else {}
        self._models[model] = _Model(limits, node_type_id, generation, retired, placed)
        self._close_retired(model)
        return limits

    def current(self, model: str) -> ClusterLimits | None:
        known = self._models.get(model)
        return known.current if known is not None else None

    def describe(self, model: str) -> str:
        """The cluster's limits, and how many running workers still have older ones."""
        known = self._models.get(model)
        if known is None:
            return "no limits"
        older = sum(
            1
            for pid, limits in known.placed.items()
            if limits is not known.current and _running(pid)
        )
        if not older:
            return known.current.summary
        workers = (
            "1 running worker keeps its" if older == 1 else f"{older} running workers keep their"
        )
        return f"{known.current.summary}; {workers} previous limits until restarted"

    def place(self, model: str, pid: int) -> None:
        """Put a just-spawned worker of ``model`` under its cluster's current limits."""
        known = self._models.get(model)
        if known is None:
            return
        known.placed = {p: lim for p, lim in known.placed.items() if _running(p)}  # forget exited
        known.placed[pid] = known.current
        try:
            known.current.place(pid)
        except OSError as exc:  # the worker runs, unlimited; say so rather than fail it
            what = f"worker pid {pid} of '{log_safe(model)}'"
            _log.error("could not put %s under its limits: %s", what, exc)

    def explain_exit(
        self, model: str, pid: int, returncode: int | None, log_tail: str = ""
    ) -> str | None:
        """Why the cluster's limits killed the worker, or None (then the exit code says it)."""
        known = self._models.get(model)
        if known is None:
            return None
        known.placed.pop(pid, None)
        for limits in (known.current, *known.retired):
            why = limits.explain_exit(pid, returncode, log_tail)
            if why is not None:
                return why
        self._close_retired(model)
        return None

    def release(self, model: str) -> None:
        """The cluster stopped: remove every generation's limits."""
        known = self._models.pop(model, None)
        if known is None:
            return
        for limits in (known.current, *known.retired):
            if not limits.close():
                _log.warning(
                    "the limits of '%s' still hold processes; left in place", log_safe(model)
                )

    def release_all(self) -> None:
        for model in list(self._models):
            self.release(model)

    def close(self) -> None:
        """regserve stops: release every cluster and remove this data dir's cgroup directory."""
        self.release_all()
        if self._cgroups is not None:
            self._cgroups.remove_bases()

    def _close_retired(self, model: str) -> None:
        known = self._models[model]
        known.retired = [limits for limits in known.retired if not limits.close()]


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _missing(what: str) -> LimitsUnavailableError:
    return LimitsUnavailableError(
        f"REGSERVE_RESOURCE_LIMITS asks for {what}, which this machine does not offer "
        "(use auto to take the best available)"
    )


def _dir_name(model: str) -> str:
    """A cgroup directory name for the model: no '/', no clash with a cgroup's own files."""
    quoted = quote(model, safe="")
    if len(quoted) > _MAX_DIR_NAME:
        quoted = quoted[:80] + "-" + hashlib.sha1(model.encode()).hexdigest()[:12]
    return f"m-{quoted}"
