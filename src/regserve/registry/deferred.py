"""The registry reader as the rest of regserve holds it: there from the start, usable once the
registry is ready.

``regserve up`` listens before it imports MLflow or prepares the hosted server's database
(``app.py`` does that in the background): until then every call here raises
:class:`RegistryStartingError` (503 ``TEMPORARILY_UNAVAILABLE`` with ``Retry-After``), and
:meth:`DeferredReader.wait_ready` is how the controller waits for it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any

from regserve.registry.errors import RegistryStartingError
from regserve.registry.models import ModelSnapshot

if TYPE_CHECKING:
    from regserve.registry.reader import RegistryReader

__all__ = ["DeferredReader"]


class DeferredReader:
    """A :class:`RegistryReader` handed in later (:meth:`attach`); blocking calls, as its."""

    def __init__(self) -> None:
        self._reader: RegistryReader | None = None
        self._ready = asyncio.Event()

    @property
    def ready(self) -> bool:
        return self._reader is not None

    def attach(self, reader: RegistryReader) -> None:
        """The registry is ready: calls go to ``reader`` from now on (on the event loop)."""
        self._reader = reader
        self._ready.set()

    async def wait_ready(self) -> None:
        """Return once :meth:`attach` was called."""
        await self._ready.wait()

    def _get(self) -> RegistryReader:
        if self._reader is None:
            raise RegistryStartingError()
        return self._reader

    @property
    def registry_uri(self) -> str:
        return self._get().registry_uri

    def snapshot(self, name: str) -> ModelSnapshot | None:
        return self._get().snapshot(name)

    def sources_naming(self, owner_id: str) -> list[tuple[str, str]]:
        return self._get().sources_naming(owner_id)

    def artifact_root(self, kind: str, object_id: str) -> str | None:
        return self._get().artifact_root(kind, object_id)

    def list_models(self) -> list[str]:
        return self._get().list_models()

    def ping(self) -> None:
        self._get().ping()

    def download(self, name: str, version: str, dest: Path) -> Path:
        return self._get().download(name, version, dest)

    def input_example(self, name: str, version: str) -> Any | None:
        return self._get().input_example(name, version)
