"""A real MJPEG-over-HTTP camera on 127.0.0.1 that can drop its stream and refuse connections (test peer)."""
from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np


class MjpegCamera:
    """Serves `frames_per_connection` JPEG frames per connection, then closes it (a dropped stream).

    While `down` is set, every request gets HTTP 503 (the camera is unreachable for the client).
    """

    def __init__(self, frames_per_connection: int = 30, fps: float = 30.0, size=(160, 120)):
        self.frames_per_connection, self.period, self.size = frames_per_connection, 1.0 / fps, size
        self.down = threading.Event()
        self.connections = 0
        self.frames_sent = 0
        camera = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                if camera.down.is_set():
                    self.send_error(503, 'camera offline')
                    return
                camera.connections += 1
                self.send_response(200)
                self.send_header('Content-Type', 'multipart/x-mixed-replace; boundary=frame')
                self.end_headers()
                for i in range(camera.frames_per_connection):
                    img = np.full((camera.size[1], camera.size[0], 3), (i * 8) % 256, np.uint8)
                    jpg = cv2.imencode('.jpg', img)[1].tobytes()
                    try:
                        self.wfile.write(b'--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n'
                                         % len(jpg) + jpg + b'\r\n')
                        self.wfile.flush()
                    except (BrokenPipeError, ConnectionResetError):
                        return
                    camera.frames_sent += 1
                    time.sleep(camera.period)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.server.daemon_threads = True
        self.url = f'http://127.0.0.1:{self.server.server_address[1]}/stream.mjpg'
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
