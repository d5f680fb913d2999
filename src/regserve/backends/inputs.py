"""The input limits every worker enforces (``REGSERVE_MAX_INPUT_*``, ``REGSERVE_MAX_JSON_DEPTH``).

The worker measures each request against them before pandas parses it
(:mod:`regserve.worker.limits`); backends hand them over as worker arguments, in a shared
worker's LOAD, or to a Ray replica.
"""

from __future__ import annotations

from regserve.settings import Settings
from regserve.worker.limits import InputLimits

__all__ = ["input_limits"]


def input_limits(settings: Settings) -> InputLimits:
    """The limits ``settings`` set for every worker."""
    return InputLimits(
        max_columns=settings.max_input_columns,
        max_rows=settings.max_input_rows,
        max_values=settings.max_input_values,
        max_depth=settings.max_json_depth,
    )
