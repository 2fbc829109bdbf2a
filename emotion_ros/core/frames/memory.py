"""Keep freed frame buffers mapped in our node processes instead of handing them back to the kernel per frame.

Every 640x480 image a node receives is copied three times by rclpy and Fast DDS (the DDS sample into the C
message, a bytes object, the message's array.array), the camera allocates two per published frame. glibc
serves such ~1 MB blocks from the heap once one was freed, but gives the heap top back to the kernel
whenever more than 2x that block is free (its dynamic trim threshold) - which is every frame - so the next
frame faults every page in again. Measured (5-face clip, 30 fps, issue 13): 645 minor page faults per frame
in face_detector_node, 590 in emotion_classifier_node, 435 in camera_node, 1.5-2 ms of kernel time per frame
each; with the thresholds below, 0 / 0 / 17 faults and 0.2-0.4 ms. The cost: a process keeps up to
TRIM_THRESHOLD of freed memory instead of returning it (a few MB at 640x480).
"""
from __future__ import annotations

import ctypes
import os
import sys

M_TRIM_THRESHOLD = -1          # glibc's mallopt parameters (malloc.h)
M_MMAP_THRESHOLD = -3
TRIM_THRESHOLD = 64 << 20      # free heap top kept before trimming; well above a few 4K frames' buffers
MMAP_THRESHOLD = 32 << 20      # glibc's largest: blocks up to a 4K BGR frame come from the reused heap
ENV_VARS = ('MALLOC_TRIM_THRESHOLD_', 'MALLOC_MMAP_THRESHOLD_')


def keep_frame_buffers() -> bool:
    """Set glibc's trim and mmap thresholds (fixed values also stop its per-free adjustment); True if set.

    No-op (False) on a C library other than glibc, or when the user set MALLOC_TRIM_THRESHOLD_ or
    MALLOC_MMAP_THRESHOLD_ themselves.
    """
    if not sys.platform.startswith('linux') or any(v in os.environ for v in ENV_VARS):
        return False
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version        # glibc only: musl's mallopt accepts and ignores these
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
