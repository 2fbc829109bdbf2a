"""The dataset recorder in the real graph: camera_node on a real clip -> face_detector_node (real detector) ->
dataset_recorder_node, driven through the `emotion-dataset` CLI; kill -9 mid-burst; restart; `emotion-train import`."""
import json
import os
import re
import signal
import subprocess
import time

import cv2
import numpy as np
import pytest

from conftest import require_shared
from ros_graph import VENV_BIN, NodeProcess, ros_args

from emotion_ros.core.dataset.facelabeler import scan

pytestmark = [pytest.mark.ros, pytest.mark.slow]


@pytest.fixture(scope='module')
def live_faces(ros_env, tmp_path_factory):
    """camera_node looping the clip + face_detector_node: `image_raw` and `faces` flow for the whole module."""
    clip = require_shared('media', 'head-pose-face-detection-male.mp4')
    logs = tmp_path_factory.mktemp('graph_logs')
    cam = NodeProcess('camera_node', ros_args({'source': str(clip), 'fps': 15.0, 'loop': True}), ros_env, logs)
    det = NodeProcess('face_detector_node', ros_args(remaps={'image': 'image_raw'}), ros_env, logs)
    wait_ready(det, 'detector on')
    yield cam, det
    det.stop()
    cam.stop()
    assert 'Traceback' not in det.output + cam.output


def recorder(ds, env, log_dir, **params):
    params.setdefault('no_face_timeout_s', 10.0)  # only bounds a failure; these 2 cores are shared
    return NodeProcess('dataset_recorder_node', ros_args({'dataset_dir': str(ds), **params}, {'image': 'image_raw'}),
                       env, log_dir)


def cli(env, *args, timeout=120):
    return subprocess.run([str(VENV_BIN / 'emotion-dataset'), *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def wait_ready(proc, needle='images, labels', timeout=60.0):
    end = time.monotonic() + timeout
    while needle not in proc.output:
        assert proc.proc.poll() is None and time.monotonic() < end, proc.output
        time.sleep(0.1)


def rows(ds):
    return [line.split(',') for line in (ds / 'faceLabels.csv').read_text().splitlines()]


def emotion_train_import(env, ds, out):
    return subprocess.run([str(VENV_BIN / 'emotion-train'), 'import', str(ds), '--out', str(out), '--quiet'],
                          env=env, capture_output=True, text=True, timeout=300)


def test_capture_refuse_count_and_import_round_trip(live_faces, ros_env, tmp_path):
    ds = tmp_path / 'ds'
    rec = recorder(ds, ros_env, tmp_path)
    try:
        wait_ready(rec)
        burst = cli(ros_env, 'capture', '--label', 'happy', '--count', '10')
        assert burst.returncode == 0, burst.stderr + rec.output
        assert burst.stdout.strip() == 'saved 10 happy (Images/face0.png .. Images/face9.png)'
        spaced = cli(ros_env, 'capture', '--label', 'Surprised', '--count', '2', '--interval', '0.5')
        assert spaced.returncode == 0 and spaced.stdout.startswith('saved 2 surprise'), spaced.stderr
        refused = cli(ros_env, 'capture', '--label', 'hapy')
        assert refused.returncode == 1
        assert "unknown label 'hapy': labelList.csv has angry, disgust, fear, happy" in refused.stderr
        counts = cli(ros_env, 'counts')
        assert counts.returncode == 0 and re.search(r'^ +happy +10 / 300$', counts.stdout, re.M), counts.stdout
    finally:
        rec.stop()
    assert rows(ds) == [[f'face{i}.png', 'happy'] for i in range(10)] + [['face10.png', 'surprise'],
                                                                         ['face11.png', 'surprise']]
    assert sorted(p.name for p in (ds / 'Images').iterdir()) == sorted(f'face{i}.png' for i in range(12))
    assert scan(ds).problems == []

    out = tmp_path / 'mine.npz'
    imp = emotion_train_import(ros_env, ds, out)
    assert imp.returncode == 0, imp.stderr
    with np.load(out) as z:
        classes = z['classes'].tolist()
        assert len(z['images']) == 12 and z['images'].shape[1:] == (48, 48)
        assert [classes[i] for i in z['labels']] == ['happy'] * 10 + ['surprise'] * 2
        for name, img in zip(z['source'], z['images']):
            assert np.array_equal(img, cv2.imread(str(ds / name), cv2.IMREAD_UNCHANGED))
        assert z['split'].tolist() == ['train'] * 8 + ['val'] * 2 + ['train', 'val']   # newest captures = val

    # ... and the rest of the README's "train on your own faces": fit, evaluate, export, use in the live graph
    train = VENV_BIN / 'emotion-train'
    run = tmp_path / 'run'
    fit = subprocess.run([str(train), 'fit', '--data', str(out), '--run-dir', str(run), '--epochs', '2',
                          '--batch-size', '8', '--holdout', '0'], env=ros_env, capture_output=True, text=True,
                         timeout=600)
    assert fit.returncode == 0, fit.stderr[-3000:]
    assert {'best.keras', 'curves.png', 'confusion_val.png', 'metrics.json'} <= {p.name for p in run.iterdir()}
    ev = subprocess.run([str(train), 'evaluate', '--data', str(out), '--model', str(run / 'best.keras'), '--json'],
                        env=ros_env, capture_output=True, text=True, timeout=300)
    assert ev.returncode == 0 and json.loads(ev.stdout)['n'] == 12, ev.stderr[-3000:]
    ex = subprocess.run([str(train), 'export', '--model', str(run / 'best.keras'), '--out-dir', str(run / 'export'),
                         '--no-int8', '--data', str(out)], env=ros_env, capture_output=True, text=True, timeout=300)
    assert ex.returncode == 0, ex.stderr[-3000:]
    clip = require_shared('media', 'head-pose-face-detection-male.mp4')
    own_domain = dict(ros_env, ROS_DOMAIN_ID=str((int(ros_env['ROS_DOMAIN_ID']) + 50) % 100 + 1))
    live = subprocess.run([str(VENV_BIN / 'emotion_live'), '--source', str(clip), '--fps', '12',
                           '--model', str(run / 'export' / 'emotion.tflite')], env=own_domain, capture_output=True,
                          text=True, timeout=300)
    assert live.returncode == 0, live.stdout[-2000:] + live.stderr[-2000:]
    assert f"model {run / 'export' / 'emotion.tflite'}" in live.stderr
    assert int(re.search(r'faces classified\s+(\d+)', live.stdout).group(1)) >= 50, live.stdout


def test_kill_9_mid_burst_leaves_a_consistent_folder_and_restart_resumes(live_faces, ros_env, tmp_path):
    ds = tmp_path / 'ds'
    rec = recorder(ds, ros_env, tmp_path)
    client = None
    try:
        wait_ready(rec)
        client = subprocess.Popen([str(VENV_BIN / 'emotion-dataset'), 'capture', '--label', 'sad', '--count', '1000'],
                                  env=ros_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        end = time.monotonic() + 60
        while not ((ds / 'faceLabels.csv').exists() and len(rows(ds)) >= 8):
            assert time.monotonic() < end and client.poll() is None, rec.output
            time.sleep(0.02)
        os.killpg(rec.proc.pid, signal.SIGKILL)
        rec.proc.wait(10)
    finally:
        rec.stop()
        if client is not None:
            client.kill()
            client.wait(10)
    before = scan(ds)
    assert before.rows_without_files == [] and not [p for p in before.problems if 'has no row' not in p]
    for row in before.rows:
        assert cv2.imread(str(ds / 'Images' / row.filename), cv2.IMREAD_UNCHANGED).shape == (48, 48)
    top = max(int(n[4:-4]) for n in os.listdir(ds / 'Images') if not n.startswith('.'))
    # What a crash between the image rename and its row append leaves behind: an image without a row.
    orphan = ds / 'Images' / f'face{top + 1}.png'
    orphan.write_bytes((ds / 'Images' / before.rows[0].filename).read_bytes())

    rec = recorder(ds, ros_env, tmp_path)
    try:
        wait_ready(rec)
        again = cli(ros_env, 'capture', '--label', 'sad', '--count', '3', '-v')
    finally:
        rec.stop()
    assert again.returncode == 0, again.stderr + rec.output
    assert again.stdout.splitlines() == [f'Images/face{top + 2 + i}.png' for i in range(3)] + ['saved 3 sad']
    after = scan(ds)
    assert len(after.rows) == len(before.rows) + 3 and after.files_without_rows == [orphan.name]

    imp = emotion_train_import(ros_env, ds, tmp_path / 'after.npz')
    assert imp.returncode == 0, imp.stderr
    assert f'files without rows (1):\n  Images/{orphan.name}' in imp.stderr
    with np.load(tmp_path / 'after.npz') as z:
        assert len(z['images']) == len(after.rows)


def test_emotion_live_record_shares_the_executor(ros_env, tmp_path):
    clip = require_shared('media', 'head-pose-face-detection-male.mp4')
    ds = tmp_path / 'ds'
    live = NodeProcess('emotion_live', ['--source', str(clip), '--loop', '--fps', '15', '--record', str(ds)],
                       ros_env, tmp_path)
    try:
        wait_ready(live)
        res = cli(ros_env, 'capture', '--label', 'neutral', '--count', '4')
    finally:
        live.stop()
    assert res.returncode == 0, res.stderr + live.output
    assert rows(ds) == [[f'face{i}.png', 'neutral'] for i in range(4)]
