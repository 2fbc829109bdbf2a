"""Live web viewer: an aiohttp server, on an event loop in a thread of its own, that serves one self-contained
page, the newest frame to every browser (WebSocket or MJPEG) and the faces, timelines, diagnostics and Hue
state as JSON.

ROS-free: a node (or a script) hands frames and results over with the thread-safe `submit_*` methods, which
never block. Each browser gets only the newest frame (one shared slot, a per-client wake-up): a slow browser
skips frames instead of queueing them, and one that takes longer than `client_timeout_s` to accept a frame is
cut off. Frames are JPEG-encoded by one encoder thread, only while someone watches, at most `max_fps`.

Safe by default: only an exact list of Host (and Origin) values is answered (guards.HostAllowList: a web
page elsewhere cannot reach the camera by DNS rebinding); on a loopback address no token is needed, any other
address needs the access token (`?token=` once, then an HttpOnly cookie; or `Authorization: Bearer`). Only
the files of `assets_dir` are served, by exact name; every endpoint is a read-only GET (HEAD: headers only).
Before any of that, connections are capped (total and per client) and closed when idle or slow to send their
headers; a client's mistakes are counted and logged once per interval, never as a traceback.

This module routes requests and fans frames and state out; guards.py holds the checks, state.py the state
model the page reads.
"""
from __future__ import annotations

import asyncio
import logging
import secrets
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

import cv2
import numpy as np
from aiohttp import WSMsgType, web

from emotion_ros.core.faces.annotate import draw_faces
from emotion_ros.core.viewer.guards import (ConnectionGate, HostAllowList, ReportingHandler, ThrottledReport,
                                            is_loopback, token_matches)
from emotion_ros.core.viewer.state import ViewerState, dumps

WEB_DIR = Path(__file__).resolve().parent / 'static'
TOKEN_COOKIE = 'emotion_viewer_token'
MJPEG_BOUNDARY = 'emotionframe'
SEND_BUFFER_BYTES = 256 * 1024  # per browser; ~5 frames of 640x480 at JPEG quality 80
_CONTENT_TYPES = {'.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8',
                  '.css': 'text/css; charset=utf-8', '.svg': 'image/svg+xml', '.png': 'image/png',
                  '.ico': 'image/x-icon', '.txt': 'text/plain; charset=utf-8'}
_SECURITY_HEADERS = {
    # The page loads nothing from anywhere else; frames are drawn from blobs.
    'Content-Security-Policy': "default-src 'self'; img-src 'self' blob: data:; connect-src 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    'X-Content-Type-Options': 'nosniff',
    'Referrer-Policy': 'no-referrer',
    'Cache-Control': 'no-store',
}


def access_token(host: str, token: str) -> tuple:
    """(token, generated): the given token, or a random one when `host` is not loopback, else ('', False)."""
    if token:
        return token, False
    if not is_loopback(host):
        return secrets.token_urlsafe(18), True
    return '', False


@dataclass
class ViewerConfig:
    host: str = '127.0.0.1'
    port: int = 8080
    token: str = ''               # required when set; see access_token() for non-loopback binds
    client_timeout_s: float = 5.0
    timeline_s: float = 60.0
    jpeg_quality: int = 80
    max_fps: float = 30.0
    draw_faces: bool = False      # draw boxes from the submitted faces (for frames without them, e.g. image_raw)
    assets_dir: Path = WEB_DIR
    allowed_hosts: tuple = ()     # (name, port or None) beyond the defaults: guards.parse_allowed_hosts
    max_connections: int = 128
    max_connections_per_client: int = 32
    idle_timeout_s: float = 10.0  # a connection without a complete request for this long is closed
    report_period_s: float = 5.0  # a kind of client mistake is logged at most once per period, with a count


@dataclass
class _Client:
    kind: str                      # 'ws' | 'mjpeg'
    peer: str
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    frame_seq: int = 0
    state_seq: int = 0
    frames_sent: int = 0
    frames_skipped: int = 0


class ViewerServer:
    """Start with `start()` (binds, raises OSError), feed with `submit_*`, end with `stop()`."""

    def __init__(self, config: ViewerConfig, log: Callable[[str], None] = print):
        self.config = config
        self._log = log
        self._report = ThrottledReport(log, config.report_period_s)
        self._gate = ConnectionGate(config.max_connections, config.max_connections_per_client)
        self._hosts: Optional[HostAllowList] = None
        self._assets = self._load_assets(Path(config.assets_dir))
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread: Optional[threading.Thread] = None
        self._runner: Optional[web.AppRunner] = None
        self.port = 0
        # Raw newest frame (ROS thread -> encoder thread).
        self._raw_lock = threading.Condition()
        self._raw = None               # (bgr, stamp_s)
        self._raw_seq = 0
        self._faces_for_drawing: list = []
        self._stopping = False
        self._encoder: Optional[threading.Thread] = None
        self._frame_wanted_at = -1e9
        # Loop-thread state (touched only on the event loop).
        self._clients: List[_Client] = []
        self._jpeg = (0, b'', 0.0)     # (seq, bytes, stamp_s)
        self.state = ViewerState(config.timeline_s, report=self._report)
        self._frame_times: deque = deque(maxlen=120)
        self.stats = {'frames_in': 0, 'frames_encoded': 0, 'frames_sent': 0, 'frames_skipped': 0,
                      'clients': 0, 'clients_total': 0, 'clients_cut_off': 0, 'unauthorized': 0,
                      'forbidden': 0, 'connections_refused': 0, 'connections': 0, 'connections_peak': 0,
                      'request_errors': 0}

    # ---------------------------------------------------------------- lifecycle

    @staticmethod
    def _load_assets(folder: Path) -> Dict[str, tuple]:
        """Name -> (bytes, content type) of the regular files directly in `folder`: the only files served."""
        assets = {}
        for path in sorted(folder.iterdir()) if folder.is_dir() else []:
            if path.is_file() and not path.is_symlink() and path.suffix in _CONTENT_TYPES:
                assets[path.name] = (path.read_bytes(), _CONTENT_TYPES[path.suffix])
        if 'index.html' not in assets:
            raise OSError(f'viewer assets missing: no index.html in {folder}')
        return assets

    @property
    def url(self) -> str:
        host = self.config.host
        host = f'[{host}]' if ':' in host else host
        return f'http://{host}:{self.port}/'

    def start(self) -> None:
        ready, errors = threading.Event(), []
        self._loop = asyncio.new_event_loop()

        def run():
            asyncio.set_event_loop(self._loop)
            try:
                self._loop.run_until_complete(self._start_site())
            except Exception as exc:  # bind errors end the thread; start() re-raises them
                errors.append(exc)
                ready.set()
                self._loop.close()
                return
            ready.set()
            self._loop.run_forever()
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            self._loop.close()

        self._thread = threading.Thread(target=run, name='viewer_http', daemon=True)
        self._thread.start()
        if not ready.wait(30.0):
            raise OSError('viewer server did not start within 30 s')
        if errors:
            exc = errors[0]
            raise OSError(f'cannot serve on {self.config.host}:{self.config.port}: {exc}') from exc
        self._stopping = False
        self._encoder = threading.Thread(target=self._encode_loop, name='viewer_jpeg', daemon=True)
        self._encoder.start()

    def stop(self) -> None:
        """Close every client and the listening socket; idempotent."""
        if self._thread is None:
            return
        with self._raw_lock:
            self._stopping = True
            self._raw_lock.notify_all()
        if self._loop is not None and self._loop.is_running():
            try:
                asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10.0)
            except Exception as exc:  # a loop that cannot shut down cleanly is still stopped below
                self._log(f'viewer shutdown: {exc!r}')
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10.0)
        if self._encoder is not None:
            self._encoder.join(10.0)
        self._thread = self._encoder = None

    async def _start_site(self) -> None:
        app = web.Application(middlewares=[self._guard], client_max_size=64 * 1024)
        app.router.add_get('/', self._index)
        app.router.add_get('/ws', self._websocket)
        app.router.add_get('/stream.mjpg', self._mjpeg)
        app.router.add_get('/frame.jpg', self._frame)
        app.router.add_get('/api/state', self._api_state)
        app.router.add_get('/api/stats', self._api_stats)
        app.router.add_get('/{name}', self._asset)
        app.on_response_prepare.append(self._add_headers)
        # aiohttp's keep-alive timer runs from the connection's start and is not reset by a partial request, so
        # it is the header timeout too (a slowloris drip is closed like an idle connection).
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0,
                                     keepalive_timeout=self.config.idle_timeout_s, logger=self._http_logger())
        await self._runner.setup()
        self._gate_connections(self._runner.server)
        site = web.TCPSite(self._runner, self.config.host, self.config.port, reuse_address=True)
        await site.start()
        self.port = self._runner.addresses[0][1]
        self._hosts = HostAllowList.for_server(self.config.host, self.port, self.config.allowed_hosts)

    def _http_logger(self) -> logging.Logger:
        """aiohttp's server log for this server only, as throttled one-line reports (no tracebacks)."""
        logger = logging.getLogger(f'emotion_ros.viewer.http.{id(self)}')
        logger.propagate = False
        logger.handlers[:] = [ReportingHandler(self._report)]
        return logger

    def _gate_connections(self, server: web.Server) -> None:
        """Count every connection at aiohttp's connection hooks (before a byte is read); abort one over a cap."""
        made, lost = server.connection_made, server.connection_lost

        def connection_made(handler, transport) -> None:
            made(handler, transport)
            peer = transport.get_extra_info('peername')
            if not self._gate.admit(handler, str(peer[0]) if peer else '?'):
                self.stats['connections_refused'] += 1
                self._report('connection-cap', f'connection refused: over the cap ({self._gate.max_total} open, '
                                               f'{self._gate.max_per_client} per client)')
                # After aiohttp has started the connection's task (it does so right after this hook): aborted
                # here, the task would start on a connection already torn down.
                asyncio.get_running_loop().call_soon(transport.abort)
            self.stats['connections'], self.stats['connections_peak'] = len(self._gate.open), self._gate.peak

        def connection_lost(handler, exc=None) -> None:
            self._gate.release(handler)
            self.stats['connections'] = len(self._gate.open)
            lost(handler, exc)

        server.connection_made, server.connection_lost = connection_made, connection_lost

    async def _shutdown(self) -> None:
        for client in list(self._clients):
            client.wake.set()
        if self._runner is not None:
            await self._runner.cleanup()

    # ---------------------------------------------------------------- input (any thread, never blocks)

    def wants_frames(self) -> bool:
        """True while a browser watches (or a script fetched /frame.jpg in the last 10 s): the node subscribes
        to the image topic only then, so an unwatched viewer costs the graph nothing."""
        return bool(self.stats['clients']) or time.monotonic() - self._frame_wanted_at < 10.0

    def submit_frame(self, bgr: np.ndarray, stamp_s: float) -> None:
        """Newest frame (BGR uint8); an older one not yet encoded is replaced (dropped)."""
        with self._raw_lock:
            if self._raw is not None and self.stats['clients']:  # not yet encoded for the watching browsers
                self.stats['frames_skipped'] += 1
            self._raw = (bgr, stamp_s)
            self._raw_seq += 1
            self.stats['frames_in'] += 1
            self._raw_lock.notify()

    def submit_faces(self, stamp_s: float, faces: List[dict]) -> None:
        """Faces of one frame: dicts with id, label, confidence, valence, arousal, labels, scores, box."""
        with self._raw_lock:
            self._faces_for_drawing = [(tuple(f['box']), f['id'], f['label'], f['confidence']) for f in faces]
        self._call(self._on_faces, stamp_s, faces)

    def submit_diagnostics(self, statuses: List[dict]) -> None:
        """Statuses with name, level (0 OK, 1 WARN, 2 ERROR, 3 STALE), message, values (dict)."""
        self._call(self._on_diagnostics, statuses)

    def submit_hue(self, state: dict) -> None:
        self._call(self._on_hue, state)

    def _call(self, fn, *args) -> None:
        loop = self._loop
        if loop is not None and loop.is_running():
            try:
                loop.call_soon_threadsafe(fn, *args)
            except RuntimeError:  # loop closed between the check and the call (shutdown)
                pass

    # ---------------------------------------------------------------- encoder thread

    def _encode_loop(self) -> None:
        last = 0.0
        while True:
            with self._raw_lock:
                self._raw_lock.wait_for(lambda: self._stopping or (self._raw is not None and self.stats['clients']))
                if self._stopping:
                    return
                wait = last + 1.0 / self.config.max_fps - time.monotonic()
                if wait > 0:  # at most max_fps: a newer frame may replace this one meanwhile
                    self._raw_lock.wait(wait)
                    continue
                (bgr, stamp), seq = self._raw, self._raw_seq
                self._raw = None
                faces = list(self._faces_for_drawing)
            last = time.monotonic()
            jpeg = self._encode(bgr, faces)
            if jpeg:
                self.stats['frames_encoded'] += 1
                self._call(self._on_jpeg, seq, jpeg, stamp)

    def _encode(self, bgr: np.ndarray, faces=None) -> bytes:
        if self.config.draw_faces:
            if faces is None:
                with self._raw_lock:
                    faces = list(self._faces_for_drawing)
            bgr = draw_faces(bgr, faces)
        ok, buf = cv2.imencode('.jpg', bgr, [cv2.IMWRITE_JPEG_QUALITY, int(self.config.jpeg_quality)])
        return buf.tobytes() if ok else b''

    # ---------------------------------------------------------------- loop-thread state

    def _on_jpeg(self, seq: int, jpeg: bytes, stamp: float) -> None:
        self._jpeg = (seq, jpeg, stamp)
        self._frame_times.append(time.monotonic())
        for client in self._clients:
            client.wake.set()

    def _bump_state(self) -> None:
        for client in self._clients:
            if client.kind == 'ws':
                client.wake.set()

    def _on_faces(self, stamp: float, faces: List[dict]) -> None:
        self.state.set_faces(stamp, faces)
        self._bump_state()

    def _on_diagnostics(self, statuses: List[dict]) -> None:
        self.state.set_diagnostics(statuses)
        self._bump_state()

    def _on_hue(self, state: dict) -> None:
        self.state.set_hue(state)
        self._bump_state()

    def _viewer_stats(self) -> dict:
        times = self._frame_times
        fps = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0
        recent = [t for t in times if time.monotonic() - t < 3.0]
        return dict(self.stats, stream_fps=round(fps if recent else 0.0, 2))

    def _state_json(self) -> str:
        return self.state.state_json(self._viewer_stats())

    # ---------------------------------------------------------------- HTTP

    def _token_ok(self, request: web.Request) -> bool:
        token = self.config.token
        if not token:
            return True
        auth = request.headers.get('Authorization', '')
        given = [request.query.get('token', ''), request.cookies.get(TOKEN_COOKIE, ''),
                 auth[7:] if auth.startswith('Bearer ') else '']
        return any(token_matches(g, token) for g in given)

    @web.middleware
    async def _guard(self, request: web.Request, handler):
        """Method, Host, token, Origin, in that order; any failure of a handler on a client's input is a
        throttled one-line report and a plain 400/500, never a traceback."""
        try:
            self._check(request)
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status >= 500:
                self._report('http-error', f'{request.method} {request.path}: {exc.status} {exc.reason}')
            raise
        except (asyncio.CancelledError, ConnectionError):
            raise
        except Exception as exc:  # a client's input that a handler did not expect: answered, counted, logged once
            self.stats['request_errors'] += 1
            self._report('request-error', f'{request.method} {request.path[:100]} failed: {type(exc).__name__}')
            raise web.HTTPBadRequest(text='bad request\n') from None

    def _check(self, request: web.Request) -> None:
        if request.method not in ('GET', 'HEAD'):
            raise web.HTTPMethodNotAllowed(request.method, ['GET', 'HEAD'], text='read-only viewer\n')
        host = request.headers.get('Host')
        if self._hosts is None or not self._hosts.allows_host(host):
            self.stats['forbidden'] += 1
            self._report('forbidden-host', f'Host {host!r} refused (not in the allow-list)')
            raise web.HTTPForbidden(text='this viewer answers only to its own address, localhost, 127.0.0.1, '
                                         '[::1] and the allowed_hosts parameter\n')
        if not self._token_ok(request):
            self.stats['unauthorized'] += 1
            self._report('unauthorized', 'request without the access token refused')
            raise web.HTTPUnauthorized(text='access token required: open the URL with ?token=<the token> '
                                            '(see the viewer\'s start-up line for where it is)\n')
        if not self._hosts.allows_origin(request.headers.get('Origin'), host):
            self.stats['forbidden'] += 1
            self._report('forbidden-origin', f'Origin {request.headers.get("Origin")!r} refused')
            raise web.HTTPForbidden(text='cross-origin request refused\n')

    @staticmethod
    async def _add_headers(request: web.Request, response: web.StreamResponse) -> None:
        for k, v in _SECURITY_HEADERS.items():
            response.headers.setdefault(k, v)

    async def _index(self, request: web.Request) -> web.Response:
        response = self._asset_response('index.html')
        if self.config.token and request.query.get('token'):
            response.set_cookie(TOKEN_COOKIE, self.config.token, httponly=True, samesite='Strict')
        return response

    async def _asset(self, request: web.Request) -> web.Response:
        name = request.match_info['name']
        if name not in self._assets or name == 'index.html':
            raise web.HTTPNotFound(text='not found\n')
        return self._asset_response(name)

    def _asset_response(self, name: str) -> web.Response:
        body, ctype = self._assets[name]
        return web.Response(body=body, headers={'Content-Type': ctype})

    async def _api_state(self, request: web.Request) -> web.Response:
        return web.json_response(text=self.state.api_json(self._viewer_stats()))

    async def _api_stats(self, request: web.Request) -> web.Response:
        clients = [{'kind': c.kind, 'peer': c.peer, 'frames_sent': c.frames_sent,
                    'frames_skipped': c.frames_skipped} for c in self._clients]
        return web.json_response(dict(self._viewer_stats(), client_list=clients, port=self.port), dumps=dumps)

    @staticmethod
    def _head(content_type: str) -> web.Response:
        """HEAD of a streaming endpoint: its headers, no body (a stream has no length to announce)."""
        return web.Response(headers={'Content-Type': content_type})

    async def _frame(self, request: web.Request) -> web.Response:
        """The newest frame as one JPEG (for scripts); waits up to 5 s for one while the image topic is joined."""
        if request.method == 'HEAD':
            return self._head('image/jpeg')
        self._frame_wanted_at = time.monotonic()
        end = self._frame_wanted_at + 5.0
        while True:
            with self._raw_lock:
                raw, raw_seq = self._raw, self._raw_seq
            seq, jpeg, _ = self._jpeg
            if jpeg and seq >= raw_seq:
                break
            if raw is not None:
                jpeg = await asyncio.get_running_loop().run_in_executor(None, self._encode, raw[0])
                break
            if time.monotonic() > end:
                raise web.HTTPServiceUnavailable(text='no frame yet\n')
            await asyncio.sleep(0.1)
        return web.Response(body=jpeg, headers={'Content-Type': 'image/jpeg'})

    def _add_client(self, kind: str, request: web.Request) -> _Client:
        client = _Client(kind, request.remote or '?')
        self._bound_send_buffer(request)
        self._clients.append(client)
        self.stats['clients_total'] += 1
        with self._raw_lock:
            self.stats['clients'] = len(self._clients)
            self._raw_lock.notify()
        client.wake.set()
        return client

    @staticmethod
    def _bound_send_buffer(request: web.Request) -> None:
        """Keep at most a few frames in flight per browser: queued frames are stale frames, and a full buffer
        is what tells a slow browser from a fast one (the kernel's default grows to megabytes)."""
        transport = request.transport
        if transport is None:
            return
        transport.set_write_buffer_limits(high=SEND_BUFFER_BYTES // 2)
        sock = transport.get_extra_info('socket')
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)
            except OSError:
                pass

    def _remove_client(self, client: _Client) -> None:
        if client in self._clients:
            self._clients.remove(client)
        self.stats['clients'] = len(self._clients)

    async def _send(self, client: _Client, send) -> bool:
        """Await one write; False (and count a cut-off) when the browser did not take it in time."""
        try:
            await asyncio.wait_for(send, self.config.client_timeout_s)
            return True
        except asyncio.TimeoutError:
            self.stats['clients_cut_off'] += 1
            self._log(f'viewer: cut off {client.kind} client {client.peer} (took no frame for '
                      f'{self.config.client_timeout_s:.0f} s)')
            return False

    def _take_frame(self, client: _Client):
        seq, jpeg, _ = self._jpeg
        if seq <= client.frame_seq or not jpeg:
            return None
        if client.frame_seq:
            skipped = seq - client.frame_seq - 1
            client.frames_skipped += skipped
        client.frame_seq = seq
        client.frames_sent += 1
        self.stats['frames_sent'] += 1
        return jpeg

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        if request.method == 'HEAD':
            return self._head('text/plain; charset=utf-8')
        ws = web.WebSocketResponse(compress=False, heartbeat=max(2.0, self.config.client_timeout_s),
                                   max_msg_size=64 * 1024)
        await ws.prepare(request)
        client = self._add_client('ws', request)
        sender = asyncio.ensure_future(self._ws_sender(request, ws, client))
        try:
            await ws.send_str(self.state.hello_json())
            async for msg in ws:  # the page sends nothing that changes state; reading detects a close
                if msg.type == WSMsgType.ERROR:
                    break
        finally:
            sender.cancel()
            self._remove_client(client)
            if not ws.closed:
                await ws.close()
        return ws

    async def _ws_sender(self, request: web.Request, ws: web.WebSocketResponse, client: _Client) -> None:
        try:
            while not ws.closed and not self._stopping:
                await client.wake.wait()
                client.wake.clear()
                if self._stopping:
                    break
                if self.state.seq > client.state_seq:
                    client.state_seq = self.state.seq
                    if not await self._send(client, ws.send_str(self._state_json())):
                        self._cut_off(request)
                        break
                jpeg = self._take_frame(client)
                if jpeg is not None and not await self._send(client, ws.send_bytes(jpeg)):
                    self._cut_off(request)
                    break
        except (ConnectionError, RuntimeError):
            pass
        finally:
            self._remove_client(client)

    @staticmethod
    def _cut_off(request: web.Request) -> None:
        """Drop the connection at once: a stalled peer would also stall a polite close."""
        if request.transport is not None:
            request.transport.abort()

    async def _mjpeg(self, request: web.Request) -> web.StreamResponse:
        content_type = f'multipart/x-mixed-replace; boundary={MJPEG_BOUNDARY}'
        if request.method == 'HEAD':
            return self._head(content_type)
        response = web.StreamResponse(headers={'Content-Type': content_type})
        await response.prepare(request)
        client = self._add_client('mjpeg', request)
        try:
            while not self._stopping:
                await client.wake.wait()
                client.wake.clear()
                jpeg = self._take_frame(client)
                if jpeg is None:
                    continue
                part = (f'--{MJPEG_BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n'
                        ).encode() + jpeg + b'\r\n'
                if not await self._send(client, response.write(part)):
                    self._cut_off(request)
                    break
        except (ConnectionError, RuntimeError):
            pass
        finally:
            self._remove_client(client)
        return response
