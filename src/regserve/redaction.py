"""The server's own paths in texts shown to callers: written relative to the data dir.

State messages, events and a version's logs are read by anyone with CAN_READ on the model;
they name files (``/srv/regserve/data/models/m/1/MLmodel``, environments, sockets). The
absolute location of the data dir tells a caller about the host, not about the model, so
:class:`PathRedactor` writes it ``<data-dir>`` (``<data-dir>/models/m/1/MLmodel``), and an
environment cache kept elsewhere ``<env-cache>``.
"""

from __future__ import annotations

import re
from pathlib import Path

from regserve.settings import Settings

__all__ = ["DATA_DIR", "PathRedactor"]

DATA_DIR = "<data-dir>"
_ENV_CACHE = "<env-cache>"
# A path ends where a path component cannot go on: "/data" is not in "/data2/x".
_END = r"(?![\w.-])"


class PathRedactor:
    """Rewrites the data dir's absolute path (every spelling of it) in a text."""

    def __init__(self, paths: dict[str, str]) -> None:
        """``paths``: absolute path -> what to write instead."""
        self._names = paths
        spellings = sorted((p for p in paths if p not in ("", "/")), key=len, reverse=True)
        alternatives = "|".join(re.escape(p) for p in spellings)
        self._pattern = re.compile(f"(?:{alternatives}){_END}") if spellings else None

    @classmethod
    def for_settings(cls, settings: Settings) -> PathRedactor:
        paths: dict[str, str] = {}
        cache = settings.env_cache_dir
        if cache is not None:
            paths.update(_spellings(cache, _ENV_CACHE))
        paths.update(_spellings(settings.data_dir, DATA_DIR))
        return cls(paths)

    def __call__(self, text: str) -> str:
        if self._pattern is None or not text:
            return text
        return self._pattern.sub(lambda m: self._names[m.group()], text)


def _spellings(path: Path, name: str) -> dict[str, str]:
    """The ways a path may be written in a text: as configured (made absolute) and resolved."""
    expanded = path.expanduser()
    return {str(expanded.absolute()): name, str(expanded.resolve()): name}
