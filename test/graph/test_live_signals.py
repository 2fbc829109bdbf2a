"""emotion_live (the one-process runner) on SIGINT and SIGTERM: exit 0 with its summary, every node through its
`shutdown` transition while the context is valid, so the HRI publisher's final empty `tracked` goes out
(issue 24 row 11; on cf495d6 `--hri` ended with exit 1 and "publisher's context is invalid")."""
from __future__ import annotations

import os
import re
import signal
import subprocess

import pytest

from ros_graph import VENV_BIN, spin_until

pytest.importorskip('rclpy')
pytestmark = [pytest.mark.ros, pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.mark.parametrize('signame', ['SIGINT', 'SIGTERM'])
def test_runner_with_hri_ends_with_0_and_an_empty_tracked_list(ros_node, ros_env, tmp_path, signame):
    hri = pytest.importorskip('hri_msgs.msg', reason='hri_msgs is not built into this venv (`make hri-msgs`)')
    from rclpy.qos import qos_profile_system_default
    tracked = []
    ros_node.create_subscription(hri.IdsList, '/humans/faces/tracked', tracked.append, qos_profile_system_default)
    log = tmp_path / 'live.log'
    with open(log, 'w') as out:
        proc = subprocess.Popen([str(VENV_BIN / 'emotion_live'), '--source', 'demo', '--loop', '--fps', '10',
                                 '--hri', '--hue-dry-run'], env=ros_env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            assert spin_until(ros_node, lambda: any(m.ids for m in tracked) or proc.poll() is not None, 180), \
                log.read_text()[-3000:]
            os.killpg(proc.pid, getattr(signal, signame))
            # a consumer keeps spinning while the runner ends (it takes the last list while its writer exists)
            spin_until(ros_node, lambda: proc.poll() is not None, 60)
            code = proc.wait(timeout=10)
            spin_until(ros_node, lambda: tracked[-1].ids == [], 5)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    text = log.read_text()
    assert code == 0, text[-3000:]
    assert re.search(r'frames published\s+\d+', text), text[-3000:]
    for node in ('camera', 'face_detector', 'emotion_classifier', 'hri_publisher', 'hue_actuator'):
        assert f'[{node}]: shut down ({signame} received); exiting' in text, (node, text[-3000:])
    assert tracked[-1].ids == [], [m.ids for m in tracked[-3:]]
    assert 'Traceback' not in text, text[-3000:]
