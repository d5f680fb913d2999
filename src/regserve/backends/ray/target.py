"""RayTarget: how the gateway reaches a version on Ray Serve, through a DeploymentHandle.

The handle is called from the gateway's event loop; Serve routes the call to a replica (and
waits for one when the deployment is scaled to zero). The answer is the same
``wire.Response`` (status, content type, body) a local worker gives, so the gateway answers
byte for byte the same.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from regserve.errors import DeadlineExceededError, UnavailableError
from regserve.worker import wire

__all__ = ["RayTarget"]

_log = logging.getLogger("regserve.ray")


class RayTarget:
    """A version's Serve deployment handle, with regserve's timeout and error answers."""

    def __init__(self, handle: Any, label: str, app: str = "", deployment: str = "") -> None:
        self._handle = handle
        self.label = label
        self.app = app
        """The Serve application and deployment (how another gateway finds it)."""
        self.deployment = deployment

    async def request(self, content_type: str | None, body: bytes, timeout: float) -> wire.Response:
        from ray.exceptions import RayActorError, RayError
        from ray.serve.exceptions import RayServeException

        response = self._handle.remote(content_type, body)
        try:
            status, answer_type, answer = await asyncio.wait_for(_result(response), timeout)
        except asyncio.TimeoutError:
            response.cancel()
            raise DeadlineExceededError(
                f"{self.label} did not answer within {timeout:g} s (the request timeout)."
            ) from None
        except (RayError, RayServeException) as exc:
            _log.warning("%s: %s", self.label, exc)
            raise UnavailableError(
                f"{self.label} could not answer on Ray Serve ({type(exc).__name__}); "
                "retry shortly.",
                # its replica died with it: the gateway sends it again, a bounded number of times
                sent=isinstance(exc, RayActorError),
            ) from None
        return wire.Response(int(status), str(answer_type), bytes(answer))


async def _result(response: Any) -> Any:
    return await response
