"""emotion_ros.core.frames.memory: frame-sized buffers freed and allocated again fault no pages in."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# Three 640x480x3 buffers per "frame", freed together, as rclpy's take of a sensor_msgs/Image makes them.
PROBE = r'''
import resource, sys
from emotion_ros.core.frames.memory import keep_frame_buffers
applied = keep_frame_buffers() if sys.argv[1] == "tuned" else None
n = 640 * 480 * 3
def frame():
    a = b"\x01" * n
    b = a + b""
    c = bytearray(a)
    return len(a) + len(b) + len(c)
frame()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(30):
    frame()
print(applied, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 30)
'''


def _probe(mode: str, **env):
    run_env = {k: v for k, v in os.environ.items() if not k.startswith('MALLOC_')}
    run_env.update(env, PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, '-c', PROBE, mode], capture_output=True, text=True, env=run_env,
                         timeout=60, check=True).stdout.split()
    return out[0], float(out[1])


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='glibc mallopt')
def test_frame_buffers_are_reused_without_page_faults():
    _, untuned = _probe('untuned')
    applied, tuned = _probe('tuned')
    if applied != 'True':
        pytest.skip('not glibc')
    if untuned < 50:
        pytest.skip(f'this C library already reuses the buffers ({untuned:.0f} faults per frame untuned)')
    assert tuned < 5, f'{tuned:.0f} page faults per frame (untuned: {untuned:.0f})'


def test_user_malloc_settings_are_left_alone():
    applied, _ = _probe('tuned', MALLOC_TRIM_THRESHOLD_='1000')
    assert applied == 'False'
