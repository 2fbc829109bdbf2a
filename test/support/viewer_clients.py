"""Viewer clients for tests and bench/bench_viewer.py: WebSocket viewers that count what they receive, and a
stalled client that asks for a stream and never reads."""
from __future__ import annotations

import asyncio
import json
import socket
import time
from typing import List

WS_UPGRADE = ('Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n'
              'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n')


def stalled_client(port: int, path: str = '/stream.mjpg', extra_headers: str = '') -> socket.socket:
    """Connected, request sent, never reads; a tiny receive buffer so it stalls within a few frames."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(('127.0.0.1', port))
    sock.sendall(f'GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{extra_headers}\r\n'.encode())
    return sock


async def _watch(url: str, seconds: float, got: dict) -> None:
    import aiohttp
    try:
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(url + 'ws') as ws:
                end = time.monotonic() + seconds
                while time.monotonic() < end:
                    try:
                        msg = await ws.receive(timeout=max(0.05, end - time.monotonic()))
                    except asyncio.TimeoutError:
                        break
                    if msg.type == aiohttp.WSMsgType.BINARY:
                        got['frames'] += 1
                        got['jpeg'] = got['jpeg'] and msg.data[:2] == b'\xff\xd8'
                    elif msg.type == aiohttp.WSMsgType.TEXT:
                        got['states'] += 1
                        got['last'] = json.loads(msg.data)
                    else:
                        got['closed'] = True
                        break
    except Exception as exc:  # reported to the caller
        got['error'] = repr(exc)


def watch_websockets(url: str, seconds: float, n: int) -> List[dict]:
    """`n` viewers at once for `seconds`: per viewer frames, states, last state, jpeg (all frames were JPEG),
    closed (by the server), error."""
    got = [{'frames': 0, 'states': 0, 'last': None, 'jpeg': True, 'closed': False, 'error': None} for _ in range(n)]

    async def all_of_them():
        await asyncio.gather(*[_watch(url, seconds, g) for g in got])
    asyncio.run(all_of_them())
    return got


def raw_request(port: int, request: bytes, timeout: float = 30.0, source: str = '') -> bytes:
    """Send bytes exactly as given (no client-side normalisation) and read the whole answer until close."""
    with socket.create_connection(('127.0.0.1', port), timeout=timeout,
                                  source_address=(source, 0) if source else None) as sock:
        sock.sendall(request)
        chunks = []
        while True:
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                break
            if not data:
                break
            chunks.append(data)
    return b''.join(chunks)


def http_status(answer: bytes) -> int:
    """The status code of a raw answer (0 when the server closed without one)."""
    parts = answer.split(b' ', 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
