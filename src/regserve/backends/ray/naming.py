"""Ray Serve names for a served version: safe characters, unique per (model, version).

Serve uses application names in actor and log file names, so only ``[A-Za-z0-9_-]`` are
kept; a short digest of the real model name keeps two models whose names differ only in
other characters apart.
"""

from __future__ import annotations

import hashlib
import re

__all__ = ["APP_PREFIX", "app_name", "app_prefix", "deployment_name"]

APP_PREFIX = "regserve-"
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
_MAX_MODEL_CHARS = 40


def _model_part(model_name: str) -> str:
    digest = hashlib.sha256(model_name.encode("utf-8")).hexdigest()[:8]
    safe = _UNSAFE.sub("_", model_name).strip("_")[:_MAX_MODEL_CHARS] or "model"
    return f"{safe}-{digest}"


def app_name(model_name: str, version: str) -> str:
    """The Serve application of one version, e.g. ``regserve-iris-classifier-1a2b3c4d-v2``."""
    return f"{APP_PREFIX}{_model_part(model_name)}-v{version}"


def app_prefix(model_name: str) -> str:
    """What every application of the model's versions starts with."""
    return f"{APP_PREFIX}{_model_part(model_name)}-v"


def deployment_name(version: str) -> str:
    """The deployment inside a version's application."""
    return f"v{version}"
