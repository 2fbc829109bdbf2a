"""Thread counts of the native libraries in our node processes: one thread each, chosen by measurement.

Measured on 2-core machines shared with other work (issue 13, docs/benchmarks.md): a second LiteRT/XNNPACK
thread cost 8-30 % more CPU time per call (blazeface 4.3 vs 3.5 ms per 640x480 frame, the emotion model
1.3 vs 1.0 ms per face) and bought no wall time once the cores were busy, and OpenCV's default pool (one
thread per core) splits a 1 ms resize or warp across both cores, so a frame waits for whichever core a
background process holds. Per frame the graph needs a few ms of CPU in a 33 ms budget, so the parallelism
that pays is between frames and nodes (separate processes), not inside one call.
"""
from __future__ import annotations

import os

OPENCV_THREADS = 1


def limit_native_threads(opencv_threads: int = OPENCV_THREADS) -> None:
    """cv2 to `opencv_threads` threads; OpenMP runtimes (yuface) sleep instead of spinning when idle."""
    os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')
    import cv2
    cv2.setNumThreads(int(opencv_threads))
