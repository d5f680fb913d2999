"""Keeping a model's code away from regserve and from other models (docs/security.md)."""

from regserve.sandbox.policy import (
    NETWORK_TAG,
    Isolation,
    IsolationUnavailableError,
    Sandbox,
    parse_network,
)

__all__ = ["NETWORK_TAG", "Isolation", "IsolationUnavailableError", "Sandbox", "parse_network"]
