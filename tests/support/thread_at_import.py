"""A stand-in for a model library that starts a thread when it is imported (as some telemetry
or thread-pool libraries do): a process that imported it is not safe to fork.

Also a pyfunc ``loader_module`` (``_load_pyfunc``), so that a model can name it as its flavor's
library: the model answers the row count.
"""

from __future__ import annotations

import threading
import time


def _poll() -> None:
    while True:
        time.sleep(3600)


threading.Thread(target=_poll, name="library-poller", daemon=True).start()


class _RowCounter:
    def predict(self, model_input: object, params: object = None) -> list[int]:
        rows = len(model_input)  # type: ignore[arg-type]
        return [rows] * rows


def _load_pyfunc(path: str) -> _RowCounter:
    return _RowCounter()
