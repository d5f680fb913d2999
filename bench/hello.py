"""The ceiling: a bare hello-world ASGI app on the ASGI server regserve uses, configured alike.

Run: ``python -m bench.hello --port PORT``. It answers every request with a small JSON body
after reading the request body, as the scoring path does.
"""

from __future__ import annotations

import argparse
from typing import Any

import uvicorn

_BODY = b'{"predictions":[0]}'
_HEADERS = [(b"content-type", b"application/json"), (b"content-length", b"19")]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": _BODY})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    # The options regserve's app.serve gives uvicorn (loop and http: uvicorn's "auto").
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        lifespan="off",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=15,
    )


if __name__ == "__main__":
    main()
