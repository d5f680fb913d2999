"""A failed version's message in one line: the exception it died of, not its traceback.

A version that cannot start carries the last lines of its log in its state message (and the
endpoint's message repeats it when every version failed). The UI shows the exception line
(``RuntimeError: weights file missing``) and links to the full log. ``static/serving.js``
applies the same rule to what it reads from the API: change both together.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Headline", "headline"]

_EXCEPTION_LINE = re.compile(
    r"^[A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt|Warning|Failure|Fault)(?::\s.*)?$"
)
_LOG_LEAD = re.compile(r"\s*Last log lines:\s*$")
_ENDPOINT_SCOPE = re.compile(r"^[^.]*\(failed: v(\w+)[^)]*\)\.")


@dataclass(frozen=True)
class Headline:
    """One line to show, and the version whose log has the rest (None: nothing more to read)."""

    text: str
    log_version: str | None = None


def headline(message: str, version: str | None = None) -> Headline:
    """``message`` shortened to its cause when it carries log lines; ``version`` is the
    message's own version (None for an endpoint's message, which names its failed versions)."""
    lines = message.split("\n")
    if len(lines) < 2:
        return Headline(message)
    first = _LOG_LEAD.sub("", lines[0])
    causes = [line.rstrip() for line in lines[1:] if _EXCEPTION_LINE.match(line.rstrip())]
    scope = _ENDPOINT_SCOPE.match(first)
    log_version = version or (scope[1] if scope else None)
    if not causes:
        return Headline(first, log_version)
    return Headline(f"{scope[0]} {causes[-1]}" if scope else causes[-1], log_version)
