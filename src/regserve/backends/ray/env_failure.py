"""A runtime_env that a Ray node could not build, said in a line instead of Ray's traceback.

When a node cannot build a replica's environment (a requirement the index does not have, an
index it cannot reach, a build past Ray's timeout), Serve fails the deployment with its own
words around the runtime_env agent's traceback: ``[Node <address>] Traceback ...`` and, for
uv, the installer's last lines. :func:`explain_env_failure` keeps what a user acts on: which
node, what uv said, and which indexes it was told to use.
"""

from __future__ import annotations

import re

__all__ = ["explain_env_failure"]

_MARKERS = ("Failed to set up runtime environment", "runtime env failed to be created")
_NODE = re.compile(r"\[Node ([^\]\s]+)\]")
_STDOUT = re.compile(r"Last \d+ lines of stdout:\n(?P<lines>.*)", re.DOTALL)
_TIMEOUT = re.compile(r"Failed to install runtime_env within the timeout of (\S+) seconds")
_EXCEPTION = re.compile(r"^[\w.]*(?:Error|Exception)\w*: .+$", re.MULTILINE)
_MAX_LINES = 8


def explain_env_failure(message: str, indexes: str) -> str | None:
    """The failure in a sentence, or None when ``message`` is not about a runtime_env.

    ``indexes``: the index options the nodes were given (passwords hidden), or empty."""
    if not any(marker in message for marker in _MARKERS):
        return None
    node = _NODE.search(message)
    where = f"on Ray node {node.group(1)}" if node else "on a Ray node"
    timeout = _TIMEOUT.search(message)
    if timeout is not None:
        what = f"the build took longer than Ray's runtime_env timeout ({timeout.group(1)} s)"
    else:
        what = _installer_words(message) or _last_exception(message) or "no reason given"
    source = indexes or "the node's uv configuration"
    return (
        f"Ray could not build this version's environment {where}: {what} "
        f"(uv installing the model's requirements from {source})."
    )


def _installer_words(message: str) -> str:
    """uv's own lines, without the environment's path."""
    found = _STDOUT.search(message)
    if found is None:
        return ""
    lines = [line.strip() for line in found.group("lines").splitlines()]
    kept = [line for line in lines if line and not line.startswith("Using Python")]
    return "; ".join(kept[:_MAX_LINES])


def _last_exception(message: str) -> str:
    found = _EXCEPTION.findall(message)
    return found[-1].strip() if found else ""
