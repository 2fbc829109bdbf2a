"""`ros2 launch emotion_ros live.launch.py view:=true` (the real launch tools): the viewer node starts beside the
graph, serves the page and shows the graph's faces; Ctrl-C ends it with the others."""
import json
import re
import time
import urllib.request

import pytest

from launch_process import Launch, launch_env, require_ros2_launch

pytestmark = [pytest.mark.ros, pytest.mark.slow]


def test_launch_view_true_serves_the_page_with_the_graphs_faces(ros_env, tmp_path):
    require_ros2_launch()
    launch = Launch(['source:=demo', 'loop:=true', 'view:=true', 'view_port:=0'], launch_env(ros_env), tmp_path)
    try:
        url, state = None, {}
        end = time.monotonic() + 240
        while time.monotonic() < end and not state.get('faces'):
            time.sleep(1.0)
            m = re.search(r'viewer at (http://127\.0\.0\.1:\d+/)', launch.output)
            if m:
                url = m.group(1)
                with urllib.request.urlopen(url + 'api/state', timeout=10) as r:
                    state = json.loads(r.read())
        assert url and state.get('faces'), launch.output[-3000:]
        assert state['faces'][0]['label'] and len(state['faces'][0]['scores']) == 7
        with urllib.request.urlopen(url, timeout=10) as r:
            assert r.status == 200 and b'emotion_ros' in r.read()
    finally:
        code = launch.stop()
    assert code == 0 and 'emotion_viewer' in ' '.join(launch.started()) and not launch.died(), launch.output[-3000:]
