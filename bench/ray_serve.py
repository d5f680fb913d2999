"""The bench's reference for the Ray backend: the same model on plain Ray Serve, written by hand.

``python -m bench.ray_serve --port P --model-dir DIR [--temp-dir D]`` starts a single-node
Ray on 127.0.0.1, Serve with its HTTP proxy on 127.0.0.1:P, and one deployment (one replica)
that loads the MLflow model and answers ``{"dataframe_records": [...]}`` at ``/`` with
``{"predictions": [...]}``, the way a user would write it without regserve. It serves until
SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import signal
import threading
from typing import Any


def _deployment() -> Any:
    from ray import serve

    @serve.deployment(num_replicas=1, max_ongoing_requests=256, ray_actor_options={"num_cpus": 0})
    class IrisModel:
        def __init__(self, model_dir: str) -> None:
            import mlflow.pyfunc

            self._model = mlflow.pyfunc.load_model(model_dir)

        async def __call__(self, request: Any) -> dict[str, Any]:
            import pandas as pd

            payload = await request.json()
            predictions = self._model.predict(pd.DataFrame(payload["dataframe_records"]))
            return {"predictions": [int(p) for p in predictions]}

    return IrisModel


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ray_serve", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--temp-dir", default=None, help="Ray's session directory")
    args = parser.parse_args(argv)
    import ray
    from ray import serve

    ray.init(
        address="local",
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        object_store_memory=128 * 1024 * 1024,
        _temp_dir=args.temp_dir,
        configure_logging=False,
        log_to_driver=False,
    )
    serve.start(http_options={"host": "127.0.0.1", "port": args.port})
    serve.run(_deployment().bind(args.model_dir), name="iris", route_prefix="/")
    print(f"ray serve ready on http://127.0.0.1:{args.port}/", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    serve.shutdown()  # type: ignore[no-untyped-call]
    ray.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
