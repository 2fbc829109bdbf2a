"""A stream URL that accepts connections but never answers must not block the camera for FFmpeg's 30 s."""
import socket
import threading
import time

import pytest

from emotion_ros.core.frames.sources import STREAM_TIMEOUT_MS, SourceError, open_source
from mjpeg_server import MjpegCamera


def test_silent_stream_fails_within_the_bounded_timeout():
    server = socket.socket()
    server.bind(('127.0.0.1', 0))
    server.listen(8)
    accepted = []
    stop = threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])      # held open, never answered
            except OSError:
                pass
    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        start = time.monotonic()
        with pytest.raises(SourceError, match='cannot open url'):
            open_source(f'http://127.0.0.1:{server.getsockname()[1]}/stream.mjpg')
        elapsed = time.monotonic() - start
    finally:
        stop.set()
        thread.join(5)
        for conn in accepted:
            conn.close()
        server.close()
    assert accepted, 'the client never connected'
    assert elapsed < 25, f'open blocked {elapsed:.0f} s (bound {STREAM_TIMEOUT_MS / 1000:.0f} s per attempt)'


def test_a_live_stream_still_opens_and_reads():
    camera = MjpegCamera(frames_per_connection=10, fps=30)
    try:
        source = open_source(camera.url)
        frame = source.read()
        source.close()
    finally:
        camera.close()
    assert frame is not None and frame.shape == (120, 160, 3)
