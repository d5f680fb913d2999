"""Where a client finds regserve and its token: the one resolution every remote command uses.

For the host and for the token, the first of these that gives one wins:

1. what the caller passed (``Client(host, token)``, ``--host`` / ``--token``);
2. ``REGSERVE_HOST`` / ``REGSERVE_TOKEN``;
3. a profile in ``~/.regserve/profiles.ini`` (or ``REGSERVE_CONFIG_FILE``): the section named by
   ``profile`` (``--profile``, ``REGSERVE_PROFILE``), else ``[default]``, with keys ``host`` and
   ``token``, as in ``~/.databrickscfg``;
4. ``http://127.0.0.1:8080`` and, for the token, ``./.regserve/admin-token`` when it exists
   (the admin token of a ``regserve up`` started in this directory).

This module runs on the user's side, never in the server, so reading the process environment
here is its job (the server reads it only through ``regserve.settings``).
"""

from __future__ import annotations

import configparser
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DEFAULT_HOST", "Connection", "ProfileError", "base_url", "resolve_connection"]

DEFAULT_HOST = "http://127.0.0.1:8080"
_ADMIN_TOKEN_FILE = Path(".regserve") / "admin-token"


class ProfileError(ValueError):
    """The profile asked for does not exist, or the profile file cannot be read."""


@dataclass(frozen=True)
class Connection:
    """A regserve's base URL and the token to call it with (``None``: no token found)."""

    url: str
    token: str | None


def base_url(host: str) -> str:
    """``host``, ``host:port`` or a URL, as a URL without a trailing slash."""
    if "://" in host:
        return host.rstrip("/")
    return f"http://{host if ':' in host else host + ':8080'}"


def resolve_connection(
    host: str | None = None,
    token: str | None = None,
    profile: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Connection:
    """The connection the rules in this module's docstring give."""
    env = os.environ if environ is None else environ
    section = _profile(profile or env.get("REGSERVE_PROFILE"), env)
    host = host or env.get("REGSERVE_HOST") or section.get("host") or DEFAULT_HOST
    token = token or env.get("REGSERVE_TOKEN") or section.get("token") or _admin_token_file()
    return Connection(base_url(host), token)


def _profile(name: str | None, env: Mapping[str, str]) -> Mapping[str, str]:
    path = Path(env.get("REGSERVE_CONFIG_FILE") or Path.home() / ".regserve" / "profiles.ini")
    parser = configparser.ConfigParser(default_section="__none__", interpolation=None)
    try:
        parser.read(path, encoding="utf-8")
    except configparser.Error as exc:
        raise ProfileError(f"cannot read the profile file {path}: {exc}") from exc
    if name is None:
        return parser["default"] if parser.has_section("default") else {}
    if not parser.has_section(name):
        raise ProfileError(f"no profile [{name}] in {path}")
    return parser[name]


def _admin_token_file() -> str | None:
    try:
        return _ADMIN_TOKEN_FILE.read_text().strip() or None
    except OSError:
        return None
