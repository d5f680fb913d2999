"""A version's logs on Ray: its replicas' Serve logs and Ray's runtime_env build output.

Serve writes each replica's log to ``<session>/logs/serve/replica_<app>_<deployment>_<id>.log``
on the node that runs it; regserve reads the ones on its own node (all of them on a single
node). Environment builds are logged by Ray in ``runtime_env_setup-*.log``.
"""

from __future__ import annotations

from pathlib import Path

from regserve.backends.local.logs import read_tail

__all__ = ["read_ray_logs"]

_MAX_FILES = 4


def read_ray_logs(logs_dir: Path | None, app: str, with_env_build: bool) -> str:
    """The newest lines of the app's replica logs (and of the env builds), each headed."""
    if logs_dir is None:
        return "(Ray's log directory is not on this machine)"
    sections = []
    replicas = _newest(logs_dir / "serve", f"replica_{app}_*.log")
    for path in replicas:
        sections.append(f"== Ray Serve replica log {path.name} ==\n{read_tail(path, 300)}")
    if with_env_build:
        for path in _newest(logs_dir, "runtime_env_setup-*.log")[:1]:
            sections.append(f"== Ray runtime_env build {path.name} ==\n{read_tail(path, 100)}")
    if not replicas:
        sections.append(f"(no replica log of {app} in {logs_dir / 'serve'} yet)")
    return "\n".join(sections)


def _newest(directory: Path, pattern: str) -> list[Path]:
    try:
        found = list(directory.glob(pattern))
        found.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    except OSError:
        return []
    return found[:_MAX_FILES]
