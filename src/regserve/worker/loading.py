"""Loading a model version the way ``mlflow models serve`` does, and picking its handler."""

from __future__ import annotations

import logging
import os
from functools import partial
from typing import Any

from regserve.worker import protocol, protocol_v1
from regserve.worker.limits import InputLimits
from regserve.worker.server import Handler

__all__ = ["load_model", "mlflow_1_handler"]

_logger = logging.getLogger("regserve.worker")


def load_model(model_path: str) -> Any:
    """Load the pyfunc model the way ``mlflow models serve`` does, in a serving environment."""
    import mlflow.pyfunc

    try:
        from mlflow.environment_variables import _MLFLOW_IS_IN_SERVING_ENVIRONMENT
    except ImportError:  # older MLflow 2.x
        pass
    else:
        # MLflow's scoring server sets this flag, and some flavors behave differently under it.
        os.environ[_MLFLOW_IS_IN_SERVING_ENVIRONMENT.name] = "true"
    return mlflow.pyfunc.load_model(model_path)


def mlflow_1_handler(model: Any, limits: InputLimits = protocol.DEFAULT_LIMITS) -> Handler | None:
    """MLflow 1.x's request format (unbatched) when the environment holds MLflow 1.x, as
    Databricks serves models pinned to mlflow<2; None otherwise."""
    if not protocol_v1.is_mlflow_1():
        return None
    _logger.info("MLflow 1.x environment: serving the MLflow 1.x request format")
    schema = model.metadata.get_input_schema()
    return partial(protocol_v1.handle, model=model, input_schema=schema, limits=limits)
