"""A small HTTP/1.1 client for the Hue bridge with hard limits on everything a bridge (or an impostor) sends.

Why by hand and not http.client / requests / aiohue: their timeouts bound each socket read, not the request,
so a peer that drips one byte a second (headers or body) or streams an endless chunked reply holds the
caller as long as it likes. Here one deadline covers connect, TLS handshake, send, headers and body; the
header block, the body and the JSON nesting depth are capped; `Retry-After` is parsed. The event stream
(`stream_lines`) bounds each line and the silence between lines instead of the total time.
"""
from __future__ import annotations

import email.utils
import json
import re
import socket
import ssl
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, Optional, Tuple

MAX_HEADER_BYTES = 16 * 1024
MAX_BODY_BYTES = 1024 * 1024
MAX_JSON_DEPTH = 32
MAX_RETRY_AFTER_S = 300.0
MAX_LINE_BYTES = 256 * 1024


class HttpError(Exception):
    """The exchange failed. `kind`: unreachable, timeout, tls, certificate, malformed or too_large."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


@dataclass
class Reply:
    status: int
    headers: Dict[str, str]
    body: bytes
    peer_cert: Optional[bytes] = None      # DER of the bridge certificate (HTTPS)

    @property
    def retry_after_s(self) -> Optional[float]:
        return parse_retry_after(self.headers.get('retry-after'))


@dataclass
class Limits:
    timeout_s: float = 1.0                 # the whole request, from connect to the last body byte
    max_body: int = MAX_BODY_BYTES
    max_header: int = MAX_HEADER_BYTES
    max_depth: int = MAX_JSON_DEPTH


def parse_retry_after(value: Optional[str], now: Optional[float] = None) -> Optional[float]:
    """Seconds to wait from a `Retry-After` header (delta-seconds or an HTTP date), capped; None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER_S)
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return max(0.0, min(when - (time.time() if now is None else now), MAX_RETRY_AFTER_S))


_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)
_BRACKETS = re.compile(rb'[\[\]{}]')


def json_depth(raw: bytes) -> int:
    """Deepest nesting of arrays/objects in `raw` (strings skipped), without recursing."""
    depth = deepest = 0
    for m in _BRACKETS.finditer(_STRING.sub(b'""', raw)):
        if m.group() in (b'[', b'{'):
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def parse_json(raw: bytes, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """JSON from a bridge; ValueError when invalid, not UTF-8, or nested deeper than `max_depth`."""
    if json_depth(raw) > max_depth:
        raise ValueError(f'JSON nested deeper than {max_depth} levels')
    try:
        return json.loads(raw.decode('utf-8'))
    except (UnicodeDecodeError, RecursionError) as exc:
        raise ValueError(str(exc)) from None


@dataclass
class Endpoint:
    host: str
    port: int
    tls: Optional[ssl.SSLContext] = None   # None = plain HTTP
    check_cert: Optional[Callable[[bytes], None]] = None   # raises HttpError('certificate') for a wrong peer

    @property
    def scheme(self) -> str:
        return 'https' if self.tls else 'http'


class _Conn:
    """One socket with a deadline applied to every read and write."""

    def __init__(self, ep: Endpoint, deadline: float):
        self.deadline = deadline
        self.buf = b''
        self.got_bytes = False                   # anything received yet (a reused connection that is closed: no)
        self.peer_cert: Optional[bytes] = None
        try:
            raw = socket.create_connection((ep.host, ep.port), timeout=self._left())
        except (socket.timeout, TimeoutError):
            raise HttpError('timeout', 'no connection within the timeout') from None
        except OSError as exc:
            raise HttpError('unreachable', f'{exc.strerror or type(exc).__name__}') from None
        self.sock = raw
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if ep.tls is not None:
            try:
                self.sock = ep.tls.wrap_socket(raw, server_hostname=None, do_handshake_on_connect=False)
                self.sock.settimeout(self._left())      # CPython bounds the whole handshake by it, not each read
                self.sock.do_handshake()
            except ssl.SSLCertVerificationError as exc:
                self.close()
                raise HttpError('certificate', f'certificate not trusted: {exc.verify_message or exc.reason}') \
                    from None
            except (socket.timeout, TimeoutError):
                self.close()
                raise HttpError('timeout', 'TLS handshake did not finish within the timeout') from None
            except (ssl.SSLError, OSError) as exc:
                self.close()
                if time.monotonic() >= self.deadline:
                    raise HttpError('timeout', 'TLS handshake did not finish within the timeout') from None
                raise HttpError('tls', f'TLS handshake failed ({getattr(exc, "reason", None) or exc})') from None
            self.peer_cert = self.sock.getpeercert(binary_form=True)
            if ep.check_cert is not None:
                try:
                    ep.check_cert(self.peer_cert or b'')
                except HttpError:
                    self.close()
                    raise

    def _left(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise HttpError('timeout', 'no complete answer within the timeout')
        return left

    def send(self, data: bytes) -> None:
        try:
            self.sock.settimeout(self._left())
            self.sock.sendall(data)
        except (socket.timeout, TimeoutError):
            raise HttpError('timeout', 'could not send the request within the timeout') from None
        except OSError as exc:
            raise HttpError('unreachable', f'connection lost while sending ({exc.strerror or type(exc).__name__})') \
                from None

    def fill(self) -> bool:
        """Read more into buf; False on EOF."""
        try:
            self.sock.settimeout(self._left())
            data = self.sock.recv(65536)
        except (socket.timeout, TimeoutError):
            raise HttpError('timeout', 'no complete answer within the timeout') from None
        except OSError as exc:
            raise HttpError('unreachable', f'connection lost while reading ({exc.strerror or type(exc).__name__})') \
                from None
        self.buf += data
        self.got_bytes = self.got_bytes or bool(data)
        return bool(data)

    def read_until(self, marker: bytes, limit: int, what: str) -> bytes:
        while True:
            i = self.buf.find(marker)
            if i >= 0:
                out, self.buf = self.buf[:i], self.buf[i + len(marker):]
                return out
            if len(self.buf) > limit:
                raise HttpError('too_large', f'{what} longer than {limit} bytes')
            if not self.fill():
                if what == 'header block' and not self.buf:
                    raise HttpError('unreachable', 'the bridge closed the connection without replying')
                raise HttpError('malformed', f'connection closed in the middle of the {what}')

    def read_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self.fill():
                raise HttpError('malformed', 'connection closed in the middle of the body')
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def abort(self) -> None:
        """From another thread: wake a blocked read (plain socket shutdown, also under TLS), then close."""
        _shutdown(self.sock)
        self.close()


def _shutdown(sock: socket.socket) -> None:
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass


def _head(conn: _Conn, limits: Limits) -> Tuple[int, Dict[str, str]]:
    block = conn.read_until(b'\r\n\r\n', limits.max_header, 'header block')
    lines = block.decode('latin-1').split('\r\n')
    m = re.match(r'HTTP/1\.[01] (\d{3})', lines[0])
    if not m:
        raise HttpError('malformed', f'not an HTTP reply ({lines[0][:40]!r})')
    headers: Dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(':')
        if not sep:
            raise HttpError('malformed', 'broken header line')
        headers[name.strip().lower()] = value.strip()
    return int(m.group(1)), headers


def _chunk_size(conn: _Conn) -> int:
    line = conn.read_until(b'\r\n', 1024, 'chunk size')
    try:
        return int(line.split(b';')[0].strip(), 16)
    except ValueError:
        raise HttpError('malformed', 'broken chunk size') from None


def _body(conn: _Conn, headers: Dict[str, str], limits: Limits) -> bytes:
    if 'chunked' in headers.get('transfer-encoding', '').lower():
        out = b''
        while True:
            size = _chunk_size(conn)
            if size == 0:
                while conn.read_until(b'\r\n', limits.max_header, 'trailer'):
                    pass
                return out
            if len(out) + size > limits.max_body:
                raise HttpError('too_large', f'reply body longer than {limits.max_body} bytes')
            out += conn.read_exact(size)
            conn.read_exact(2)
    if 'content-length' in headers:
        try:
            n = int(headers['content-length'])
        except ValueError:
            raise HttpError('malformed', 'broken Content-Length') from None
        if n < 0:
            raise HttpError('malformed', 'broken Content-Length')
        if n > limits.max_body:
            raise HttpError('too_large', f'reply body of {n} bytes (limit {limits.max_body})')
        return conn.read_exact(n)
    while conn.fill():                       # until the peer closes
        if len(conn.buf) > limits.max_body:
            raise HttpError('too_large', f'reply body longer than {limits.max_body} bytes')
    out, conn.buf = conn.buf, b''
    return out


def _request_bytes(ep: Endpoint, method: str, path: str, body: Optional[bytes], headers: Dict[str, str],
                   keep_open: bool = False) -> bytes:
    lines = [f'{method} {path} HTTP/1.1', f'Host: {ep.host}:{ep.port}', 'Accept: application/json',
             f'Connection: {"keep-alive" if keep_open else "close"}']
    lines += [f'{k}: {v}' for k, v in headers.items()]
    if body is not None:
        lines += ['Content-Type: application/json', f'Content-Length: {len(body)}']
    return ('\r\n'.join(lines) + '\r\n\r\n').encode('latin-1') + (body or b'')


KEEP_IDLE_S = 4.0


class Session:
    """At most one idle keep-alive connection to one bridge: a TLS handshake per command costs a bridge
    more than the command (and bridges serve only a few connections). One per client; not thread-safe."""

    def __init__(self, keep_idle_s: float = KEEP_IDLE_S):
        self.keep_idle_s = keep_idle_s
        self.opened = self.reused = 0
        self._conn: Optional[_Conn] = None
        self._ep: Optional[Endpoint] = None
        self._idle_since = 0.0

    def take(self, ep: Endpoint, deadline: float) -> Tuple[_Conn, bool]:
        conn, self._conn = self._conn, None
        if conn is not None and self._ep is ep and time.monotonic() - self._idle_since < self.keep_idle_s:
            conn.deadline, conn.got_bytes = deadline, False
            self.reused += 1
            return conn, True
        if conn is not None:
            conn.close()
        self.opened += 1
        return _Conn(ep, deadline), False

    def give(self, ep: Endpoint, conn: _Conn) -> None:
        self.close()
        self._conn, self._ep, self._idle_since = conn, ep, time.monotonic()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def request(ep: Endpoint, method: str, path: str, body: Any = None, headers: Optional[Dict[str, str]] = None,
            limits: Limits = Limits(), session: Optional[Session] = None) -> Reply:
    """One request (on the session's kept connection if it has one, else a fresh one); HttpError on any
    failure or limit. `body` is sent as JSON. A kept connection the bridge has closed meanwhile (nothing
    received) is retried once on a fresh one, within the same deadline."""
    raw_body = None if body is None else json.dumps(body).encode()
    deadline = time.monotonic() + limits.timeout_s
    while True:
        conn, reused = session.take(ep, deadline) if session else (_Conn(ep, deadline), False)
        keep = False
        try:
            try:
                conn.send(_request_bytes(ep, method, path, raw_body, headers or {}, keep_open=session is not None))
                status, head = _head(conn, limits)
            except HttpError as exc:
                if reused and exc.kind == 'unreachable' and not conn.got_bytes:
                    continue
                raise
            data = b'' if method == 'HEAD' or status in (204, 304) else _body(conn, head, limits)
            framed = 'content-length' in head or 'chunked' in head.get('transfer-encoding', '').lower()
            keep = (session is not None and framed and not conn.buf
                    and head.get('connection', '').lower() != 'close')
            return Reply(status, head, data, conn.peer_cert)
        finally:
            if keep:
                session.give(ep, conn)
            else:
                conn.close()


@dataclass
class StreamLimits:
    connect_timeout_s: float = 2.0         # connect + handshake + response headers
    idle_timeout_s: float = 75.0           # the bridge sends a keep-alive comment at least every ~60 s
    max_line: int = MAX_LINE_BYTES


@dataclass
class Stream:
    status: int
    headers: Dict[str, str]
    lines: Iterator[str] = field(repr=False, default=iter(()))
    close: Callable[[], None] = lambda: None


def stream_lines(ep: Endpoint, path: str, headers: Dict[str, str], limits: StreamLimits = StreamLimits()) -> Stream:
    """GET `path` and yield the reply body line by line (server-sent events); each line and each silence bounded.

    Only identity or chunked bodies; the chunk framing is removed before splitting lines."""
    conn = _Conn(ep, time.monotonic() + limits.connect_timeout_s)
    try:
        conn.send(_request_bytes(ep, 'GET', path, None, dict(headers, Accept='text/event-stream'), keep_open=True))
        status, head = _head(conn, Limits(max_header=MAX_HEADER_BYTES))
    except Exception:
        conn.close()
        raise
    chunked = 'chunked' in head.get('transfer-encoding', '').lower()

    def payload() -> Iterator[bytes]:
        if not chunked:
            if conn.buf:
                data, conn.buf = conn.buf, b''
                yield data
            while True:
                conn.deadline = time.monotonic() + limits.idle_timeout_s
                if not conn.fill():
                    return
                data, conn.buf = conn.buf, b''
                yield data
        while True:
            conn.deadline = time.monotonic() + limits.idle_timeout_s
            size = _chunk_size(conn)
            if size == 0:
                return
            if size > limits.max_line:
                raise HttpError('too_large', f'event chunk of {size} bytes')
            yield conn.read_exact(size)
            conn.read_exact(2)

    def lines() -> Iterator[str]:
        pending = b''
        try:
            for data in payload():
                pending += data
                *complete, pending = pending.split(b'\n')
                for line in complete:
                    yield line.rstrip(b'\r').decode('utf-8', 'replace')
                if len(pending) > limits.max_line:
                    raise HttpError('too_large', f'event line longer than {limits.max_line} bytes')
        finally:
            conn.close()

    return Stream(status, head, lines(), conn.abort)
