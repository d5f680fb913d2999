"""How a worker process ends: its exit codes, shared by the worker and its supervisor.

Standard library only and import-free: the worker runs it in the model's environment.
"""

from __future__ import annotations

__all__ = [
    "EXIT_FORK_UNSAFE",
    "EXIT_MODEL_LOAD_FAILED",
    "EXIT_OK",
    "EXIT_SANDBOX_FAILED",
    "EXIT_SOCKET_FAILED",
]

EXIT_OK = 0
EXIT_MODEL_LOAD_FAILED = 3
"""The model could not be loaded (the traceback is in the version's log)."""
EXIT_SOCKET_FAILED = 4
"""The worker could not listen on its socket."""
EXIT_FORK_UNSAFE = 5
"""A template whose loaded model is not safe to ``fork()`` (threads, CUDA): replicas start
afresh instead (the reason is in the version's log)."""
EXIT_SANDBOX_FAILED = 6
"""The worker could not be started in its model's sandbox (``regserve.sandbox.launcher``, which
exits with this number itself: it cannot import this module)."""
