"""Untrusted text in what regserve writes: bounded quotes in answers, escaped values in logs.

A request's body, a model name or a URL's ref are chosen by callers. Quoted in an error
message they are cut to a bounded excerpt (a 16 MB body must not come back as a 100 MB error);
written into a log line their control characters are escaped (a newline in a model name must
not forge a log line). Standard library only: the worker uses these in model environments,
and the rest of regserve imports them from here.
"""

from __future__ import annotations

import re

__all__ = ["EXCERPT_CHARS", "MESSAGE_CHARS", "bounded_message", "excerpt", "log_safe"]

EXCERPT_CHARS = 1000
"""Characters of the input an error message quotes at most."""
MESSAGE_CHARS = 4000
"""Characters an error message that quotes its input keeps at most (head and tail)."""
_LOG_CHARS = 500

# C0 and C1 controls, DEL, and the Unicode line and paragraph separators.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """``text``, or its first ``limit`` characters followed by a note saying it was cut."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... (cut at {limit} characters)"


def bounded_message(message: str, limit: int = MESSAGE_CHARS) -> str:
    """An error message someone else wrote, which may quote the whole input: past ``limit``
    characters its beginning (the wording) and its end (usually the reason) are kept, and the
    middle is replaced by a note saying how much was cut."""
    if len(message) <= limit:
        return message
    keep = limit // 2
    cut = len(message) - 2 * keep
    return f"{message[:keep]}... ({cut} characters cut) ...{message[-keep:]}"


def log_safe(value: object, limit: int = _LOG_CHARS) -> str:
    """``value`` for a log line: control characters escaped (``\\n``, ``\\x1b``, ``\\u2028``),
    at most ``limit`` characters, so a caller's string stays inside its own line."""
    return excerpt(_CONTROL.sub(_escape, str(value)), limit)


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
