"""What the viewer checks before it answers: which Host and Origin it serves, the access token, how many
connections it holds, and how it reports clients' mistakes.

ROS-free and free of aiohttp: every check takes plain strings, so each is tested (and fuzzed) alone.
"""
from __future__ import annotations

import hmac
import ipaddress
import logging
import re
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, FrozenSet, Iterable, Optional, Tuple

from emotion_ros.core.log_text import untrusted

LOOPBACK_NAMES = ('localhost', '127.0.0.1', '::1')
_LABEL = re.compile(r'^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$')


def is_loopback(host: str) -> bool:
    if host == 'localhost':
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_wildcard(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def _ip(text: str) -> Optional[str]:
    if '%' in text:  # an IPv6 zone id (`[::1%lo]`, any text after the %) is no Host a browser sends
        return None
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def canonical_name(name: str) -> Optional[str]:
    """A host name or IP literal in one spelling (lower case, no trailing dot, IPv6 compressed), or None when
    it is neither. IPv4 literals must be dotted quads: `127.1` or `0x7f.1` are refused, not guessed at."""
    if not name or len(name) > 253 or not name.isascii():
        return None
    if name.startswith('['):
        return _ip(name[1:-1]) if name.endswith(']') and ':' in name else None
    if ':' in name:
        return _ip(name)
    name = name.lower()
    name = name[:-1] if name.endswith('.') else name
    if re.fullmatch(r'[0-9.]+', name):
        return _ip(name)
    labels = name.split('.')
    return name if all(_LABEL.match(label) for label in labels) and not labels[-1].isdigit() else None


def parse_host(value: str, default_port: int = 80) -> Optional[Tuple[str, int]]:
    """(canonical name, port) of a Host header (`name`, `name:port`, `[v6]`, `[v6]:port`), or None when it is
    not exactly that. Parsed, never prefix-matched: `127.evil.example` is the name `127.evil.example`."""
    if not isinstance(value, str) or not value or len(value) > 300:
        return None
    if value.startswith('['):
        end = value.find(']')
        if end < 0:
            return None
        name, rest = value[:end + 1], value[end + 1:]
        if rest and not rest.startswith(':'):
            return None
        port_text = rest[1:] if rest else None
    else:
        name, sep, port_text = value.partition(':')
        port_text = port_text if sep else None
    if port_text is not None:
        if not port_text.isascii() or not port_text.isdigit() or len(port_text) > 5 or not 0 < int(port_text) < 65536:
            return None
        port = int(port_text)
    else:
        port = default_port
    canon = canonical_name(name)
    return None if canon is None else (canon, port)


def parse_origin(value: str) -> Optional[Tuple[str, int]]:
    """(canonical name, port) of an Origin header `http(s)://host[:port]`, or None (also for `null`, paths,
    user info or any other scheme)."""
    if not isinstance(value, str):
        return None
    scheme, sep, rest = value.partition('://')
    if not sep or scheme.lower() not in ('http', 'https') or any(c in rest for c in '/?#@\\'):
        return None
    return parse_host(rest, 443 if scheme.lower() == 'https' else 80)


def parse_allowed_hosts(text: str) -> Tuple[Tuple[str, Optional[int]], ...]:
    """The user's `allowed_hosts` (comma-separated `name` or `name:port`) as (name, port or None); raises
    ValueError naming the entry that is not a host name."""
    out = []
    for entry in (e.strip() for e in (text or '').split(',')):
        if not entry:
            continue
        parsed = parse_host(entry, default_port=0)
        if parsed is None:
            raise ValueError(f'{entry!r} is not a host name or IP address (optionally with :port)')
        out.append((parsed[0], parsed[1] or None))
    return tuple(out)


@dataclass(frozen=True)
class HostAllowList:
    """Exact Host values a viewer answers to: its bind address, `localhost`, `127.0.0.1`, `[::1]` and the
    user's names, each at the server's port (a user's `name:port` at that port, e.g. behind a proxy).

    Off loopback (the token is required there) any IP literal is served too: a request that names an address
    cannot come from DNS rebinding, and the machine's own addresses are not known in advance."""
    port: int
    names: FrozenSet[str]
    with_port: FrozenSet[Tuple[str, int]] = frozenset()
    any_ip_literal: bool = False

    @classmethod
    def for_server(cls, bind: str, port: int, extra: Iterable[Tuple[str, Optional[int]]] = ()) -> 'HostAllowList':
        names = {canonical_name(n) for n in LOOPBACK_NAMES}
        if not is_wildcard(bind) and canonical_name(bind):
            names.add(canonical_name(bind))
        with_port = set()
        for name, entry_port in extra:
            if entry_port:
                with_port.add((name, entry_port))
            else:
                names.add(name)
        return cls(port, frozenset(names), frozenset(with_port), not is_loopback(bind))

    def allows(self, parsed: Optional[Tuple[str, int]]) -> bool:
        if parsed is None:
            return False
        name, port = parsed
        if parsed in self.with_port:
            return True
        if port != self.port:
            return False
        return name in self.names or (self.any_ip_literal and _ip(name) is not None)

    def allows_host(self, header: Optional[str]) -> bool:
        return self.allows(parse_host(header or ''))

    def allows_origin(self, origin: Optional[str], host_header: Optional[str]) -> bool:
        """No Origin (not a browser's cross-site request) is fine; one that is given must be parseable, allowed
        and the page's own (the same name and port as the Host it was sent to)."""
        if origin is None:
            return True
        parsed = parse_origin(origin)
        return parsed is not None and self.allows(parsed) and parsed == parse_host(host_header or '')


def token_matches(given: Optional[str], token: str) -> bool:
    """Constant-time comparison that any client text survives (a cookie can decode to lone surrogates)."""
    if not token or not isinstance(given, str) or not given:
        return False
    try:
        data, expected = given.encode('utf-8', 'surrogatepass'), token.encode('utf-8', 'surrogatepass')
    except UnicodeError:
        return False
    return hmac.compare_digest(data, expected)


@dataclass
class ConnectionGate:
    """Open connections, total and per client address: one over either cap is closed at once (before a byte of
    it is read), so idle or slow connections cannot use up the process's file descriptors."""
    max_total: int = 128
    max_per_client: int = 32
    open: Dict[object, str] = field(default_factory=dict)
    per_client: Dict[str, int] = field(default_factory=dict)
    refused: int = 0
    peak: int = 0

    def admit(self, conn: object, client: str) -> bool:
        if len(self.open) >= self.max_total or self.per_client.get(client, 0) >= self.max_per_client:
            self.refused += 1
            return False
        self.open[conn] = client
        self.per_client[client] = self.per_client.get(client, 0) + 1
        self.peak = max(self.peak, len(self.open))
        return True

    def release(self, conn: object) -> None:
        client = self.open.pop(conn, None)
        if client is not None:
            left = self.per_client[client] - 1
            if left:
                self.per_client[client] = left
            else:
                del self.per_client[client]


class ThrottledReport:
    """One line per kind at most once per `period_s`, with how many happened since the last line: a client's
    mistakes (1,000 bad requests in 0.6 s) become a few lines, never tracebacks."""

    def __init__(self, log: Callable[[str], None], period_s: float = 5.0):
        self._log, self.period_s = log, period_s
        self._last: Dict[str, float] = {}
        self._since: Dict[str, int] = {}
        self.counts: Dict[str, int] = {}

    def __call__(self, kind: str, text: str) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        self._since[kind] = self._since.get(kind, 0) + 1
        now = time.monotonic()
        if now - self._last.get(kind, -1e9) < self.period_s:
            return
        n, self._since[kind], self._last[kind] = self._since[kind], 0, now
        self._log(f'viewer: {untrusted(text, 300)}' + (f' ({n} in the last {self.period_s:.0f} s)' if n > 1 else ''))


class ReportingHandler(logging.Handler):
    """Routes aiohttp's own server log (malformed requests, a client gone mid-answer) into a ThrottledReport
    as one line without the traceback."""

    def __init__(self, report: ThrottledReport):
        super().__init__(logging.DEBUG)
        self._report = report

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno < logging.WARNING:
            return
        exc = record.exc_info[1] if record.exc_info else None
        detail = f': {type(exc).__name__}: {exc}' if exc is not None else ''
        self._report('http-error', f'request failed ({record.getMessage()}{detail})')
