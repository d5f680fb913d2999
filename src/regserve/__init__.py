"""regserve: serve every active version of an MLflow registry's models as REST endpoints."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
