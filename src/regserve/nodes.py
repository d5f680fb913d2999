"""The node types a serving cluster can be given (``/api/2.0/clusters/list-node-types``).

A node type is the budget of a model's whole serving cluster: every worker of the model (all
its versions and replicas) shares its cores and memory, as on Databricks. ``local-default``
(this whole machine, no limit) comes first and is the default; then the sized types, by
default small (1 core, 2 GiB), medium (2, 4 GiB) and large (4, 8 GiB). An operator replaces
the sized types with a file (``REGSERVE_NODE_TYPES_FILE``, YAML or JSON)::

    node_types:
      - id: tiny
        cores: 0.5          # a number of cores, fractions allowed
        memory: 512MiB      # MiB as a number, or a size: 300MB, 2GB, 2GiB (binary units)
        description: Half a core for small models   # optional
        replicas: 2         # replicas per version this node type affords; optional, 1
        gpus: 1             # --backend ray only: GPUs per replica; optional
        ray_resources: {accelerator_type_a10g: 1}   # --backend ray only: custom resources

The backends (``regserve.backends.local.limits``) enforce the budget; this module only
describes it.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

__all__ = ["DEFAULT_NODE_TYPE", "NodeType", "NodeTypes", "NodeTypesError", "load_node_types"]

DEFAULT_NODE_TYPE = "local-default"
_SIZED = (("local-small", 1, 2), ("local-medium", 2, 4), ("local-large", 4, 8))
"""(node_type_id, cores, GiB of memory)."""
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)
_MIB = 1024 * 1024
_RESOURCE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:/-]{0,99}$")
_BUILT_IN = frozenset({"CPU", "GPU", "memory", "object_store_memory"})


class NodeTypesError(ValueError):
    """The node types file cannot be used; the message says where and why."""


@dataclass(frozen=True)
class NodeType:
    """One offered budget. ``cores`` and ``memory_mb`` are None for the unlimited type."""

    node_type_id: str
    cores: float | None
    memory_mb: int | None
    description: str
    replicas: int = 1
    gpus: float = 0.0
    """GPUs per replica on Ray (``num_gpus``); the local backend does not allocate GPUs."""
    ray_resources: Mapping[str, float] = field(default_factory=dict)
    """Ray custom resources per replica (``resources``), e.g. a node label's resource."""

    @property
    def limited(self) -> bool:
        return self.cores is not None or self.memory_mb is not None

    def api(self, machine_cores: int, machine_mb: int) -> dict[str, object]:
        """The Databricks list-node-types entry (unlimited: this machine's size)."""
        entry: dict[str, object] = {
            "node_type_id": self.node_type_id,
            "memory_mb": self.memory_mb if self.memory_mb is not None else machine_mb,
            "num_cores": _number(self.cores if self.cores is not None else machine_cores),
            "description": self.description,
            "instance_type_id": "local" if not self.limited else self.node_type_id,
        }
        if self.gpus:
            entry["num_gpus"] = _number(self.gpus)
        return entry


class NodeTypes(Mapping[str, NodeType]):
    """The offered node types, ``local-default`` first."""

    def __init__(self, types: list[NodeType]) -> None:
        self._types = {t.node_type_id: t for t in types}

    @classmethod
    def defaults(cls) -> NodeTypes:
        return cls([_machine(), *(_sized(i, c, g) for i, c, g in _SIZED)])

    def __getitem__(self, node_type_id: str) -> NodeType:
        return self._types[node_type_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._types)

    def __len__(self) -> int:
        return len(self._types)

    def get_or_default(self, node_type_id: str) -> NodeType:
        """The node type, or ``local-default`` for one no longer offered (a changed file)."""
        return self._types.get(node_type_id) or self._types[DEFAULT_NODE_TYPE]

    def node_type_replicas(self, node_type_id: str) -> int:
        """Replicas per version the node type affords (1 for one not offered)."""
        found = self._types.get(node_type_id)
        return found.replicas if found is not None else 1

    def api(self) -> dict[str, dict[str, object]]:
        """``{node_type_id: its list-node-types entry less the id}`` (the controller's form)."""
        cores, memory_mb = os.cpu_count() or 1, _machine_mb()
        entries = (t.api(cores, memory_mb) for t in self._types.values())
        return {str(e.pop("node_type_id")): e for e in entries}


def load_node_types(path: Path | None) -> NodeTypes:
    """The defaults, or ``local-default`` and the types in ``path`` (raises NodeTypesError)."""
    if path is None:
        return NodeTypes.defaults()
    try:
        text = path.expanduser().read_text(encoding="utf-8")
    except OSError as exc:
        raise NodeTypesError(f"node types file {path}: cannot be read ({exc.strerror})") from exc
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        parsed = _File.model_validate(data)
    except (ValueError, yaml.YAMLError) as exc:
        raise NodeTypesError(f"node types file {path}: {_explain(exc)}") from exc
    return _catalogue(path, parsed.node_types)


# -- the file ------------------------------------------------------------------------------------


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    cores: float | None = Field(None, gt=0, le=1024)
    memory: int | None = Field(None, gt=0, description="MiB")
    description: str | None = None
    replicas: int = Field(1, ge=1, le=64)
    gpus: float = Field(0, ge=0, le=64)
    ray_resources: dict[str, float] = Field(default_factory=dict)

    @field_validator("ray_resources")
    @classmethod
    def _resources(cls, value: dict[str, float]) -> dict[str, float]:
        for name, amount in value.items():
            if not _RESOURCE.match(name) or name in _BUILT_IN:
                raise ValueError(
                    f"'{name}' is not a custom Ray resource name (CPU, GPU and memory have "
                    "their own fields)"
                )
            if not 0 < amount <= 10_000:
                raise ValueError(f"'{name}': {amount} is not an amount between 0 and 10000")
        return value

    @field_validator("memory", mode="before")
    @classmethod
    def _size(cls, value: Any) -> Any:
        if isinstance(value, str):
            return _parse_size(value)
        return value


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid")

    node_types: list[_Entry] = Field(min_length=1)


def _catalogue(path: Path, entries: list[_Entry]) -> NodeTypes:
    seen: set[str] = set()
    machine = _machine()
    types: list[NodeType] = []
    for entry in entries:
        if entry.id in seen:
            raise NodeTypesError(f"node types file {path}: '{entry.id}' is listed twice")
        seen.add(entry.id)
        if entry.id == DEFAULT_NODE_TYPE:
            if entry.cores is not None or entry.memory is not None or _ray_sized(entry):
                raise NodeTypesError(
                    f"node types file {path}: '{DEFAULT_NODE_TYPE}' is this whole machine "
                    "without limits; give it only a description and replicas"
                )
            machine = NodeType(
                DEFAULT_NODE_TYPE,
                None,
                None,
                entry.description or machine.description,
                entry.replicas,
            )
            continue
        if entry.cores is None or entry.memory is None:
            raise NodeTypesError(f"node types file {path}: '{entry.id}' needs cores and memory")
        description = entry.description or _describe(entry.cores, entry.memory, entry.gpus)
        types.append(
            NodeType(
                entry.id,
                entry.cores,
                entry.memory,
                description,
                entry.replicas,
                entry.gpus,
                dict(entry.ray_resources),
            )
        )
    return NodeTypes([machine, *types])


def _ray_sized(entry: _Entry) -> bool:
    return bool(entry.gpus or entry.ray_resources)


def _parse_size(text: str) -> int:
    """MiB in a size: a bare number is MiB; K, M, G, T (with or without i, B) are binary."""
    match = _SIZE.match(text)
    if match is None:
        raise ValueError(f"'{text}' is not a size (say 512MiB, 300MB or 2GB)")
    number = float(match.group(1))
    unit = match.group(2).lower()
    scale = _UNITS[unit] if unit else _MIB  # a bare number is MiB, as memory_mb
    mib = math.floor(number * scale / _MIB)
    if mib < 1:
        raise ValueError(f"'{text}' is less than 1 MiB")
    return mib


def _explain(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        problems = []
        for error in exc.errors():
            where = ".".join(str(p) for p in error["loc"]) or "the file"
            problems.append(f"{where}: {error['msg']}")
        return "; ".join(problems)
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    return text or type(exc).__name__


# -- the defaults ---------------------------------------------------------------------------------


def _machine() -> NodeType:
    cores, memory_mb = os.cpu_count() or 1, _machine_mb()
    description = f"{memory_mb // 1024} GB Memory, {cores} Cores"
    return NodeType(DEFAULT_NODE_TYPE, None, None, description)


def _sized(node_type_id: str, cores: int, gigabytes: int) -> NodeType:
    return NodeType(node_type_id, cores, gigabytes * 1024, _describe(cores, gigabytes * 1024))


def _describe(cores: float, memory_mb: int, gpus: float = 0) -> str:
    memory = f"{memory_mb // 1024} GB" if memory_mb % 1024 == 0 else f"{memory_mb} MB"
    count = _number(cores)
    gpu = f", {_number(gpus)} GPU{'s' if gpus != 1 else ''}" if gpus else ""
    return f"{memory} Memory, {count} Cores{gpu}"


def _number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value


def _machine_mb() -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // _MIB)
    except (ValueError, OSError):
        return 0
