"""The Ray Serve backend (``--backend ray``): each served version is a Ray Serve deployment."""

from __future__ import annotations

from regserve.backends.ray.backend import RayBackend

__all__ = ["RayBackend"]
