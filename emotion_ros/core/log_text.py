"""Text from outside (labels, ids, file names, error texts, bridge replies) made safe to put in a log line.

Why: a log line is read by people and parsed by tools (/rosout, journald). A newline in a face id
forges a second, fake log line; ANSI escapes recolour or erase the terminal; a 10 kB label floods it.
Every node passes untrusted text through `untrusted()` before it goes into a log line.
"""
from __future__ import annotations

DEFAULT_LIMIT = 80
LINE_LIMIT = 600  # a whole log line, as a last guard (ThrottledLog)


def _escape(ch: str) -> str:
    if ch.isprintable() or ch == ' ':
        return ch
    code = ord(ch)
    return f'\\x{code:02x}' if code < 0x100 else (f'\\u{code:04x}' if code < 0x10000 else f'\\U{code:08x}')


def untrusted(value, limit: int = DEFAULT_LIMIT) -> str:
    """One printable line of at most about `limit` characters: control, ANSI, bidi and other non-printable
    characters are backslash-escaped (so `\\n` cannot start a forged line) and the rest is cut with
    a note of how much was cut."""
    text = value if isinstance(value, str) else (repr(value) if isinstance(value, (bytes, bytearray)) else str(value))
    head = text[:limit + 1]
    out = ''.join(_escape(c) for c in head)
    if len(out) > limit or len(text) > limit:
        cut = len(text) - len(head) + max(0, len(head) - limit)
        out = out[:limit] + f'...(+{max(cut, 1)} chars)'
    return out


def one_line(text: str, limit: int = LINE_LIMIT) -> str:
    """A composed log line with any stray control characters escaped and its length capped."""
    return untrusted(text, limit)
