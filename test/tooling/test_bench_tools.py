"""The benchmark plumbing (bench/), without timing anything: the summary parser follows emotion_live's
real output, the page builds from results and states goals as met/missed, the five-face clip has five
detectable faces, FLOP counts and fer's preprocessing are right, and started processes always end."""
import json
import sys
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / 'bench'))

import fer_peer  # noqa: E402
import report  # noqa: E402
from local_ros import ProcessGroup, group_members, local_ros_env  # noqa: E402
from model_flops import tflite_mflops  # noqa: E402


def test_parse_live_summary_reads_emotion_live_output():
    pytest.importorskip('rclpy')
    from bench_e2e import parse_live_summary
    from emotion_ros.live import LiveSummary
    fake = SimpleNamespace(latencies_ms=[10.0, 20.0, 30.0, 400.0], labels=Counter(happy=4), faces=4,
                           emotion_msgs=4, face_msgs=4)
    text = LiveSummary.report(fake, frames_published=5, wall_s=2.0)
    parsed = parse_live_summary('some log line\n' + text)
    assert parsed['frames_published'] == 5 and parsed['wall_s'] == 2.0 and parsed['emotion_arrays'] == 4
    assert parsed['p50_ms'] == pytest.approx(25.0, abs=0.05) and parsed['max_ms'] == pytest.approx(400.0)
    assert parsed['p50_ms'] < parsed['p95_ms'] <= parsed['max_ms']


def _classifier(ours_ms, peer_ms, ours_acc=0.6, peer_acc=0.65):
    def entry(ms, acc, mflops):
        batches = {f'batch_{b}': {'p50_ms': ms * b, 'p95_ms': ms * b * 1.2, 'n': 10, 'faces_per_s': 1000 / ms,
                                  'ms_per_face': ms} for b in (1, 8, 32)}
        return {'runtime': 'LiteRT', 'how': 'x', 'model_file': 'm', 'input': '48x48 gray', 'threads': 2,
                'accuracy_val': {'n': 100, 'accuracy': acc}, 'mflops_per_face': mflops,
                'gflops_at_best': mflops / ms, 'latency_1_face': {'p50_ms': ms, 'p95_ms': ms * 1.2, 'n': 10},
                **batches}
    ours, peer = entry(ours_ms, ours_acc, 220.0), entry(peer_ms, peer_acc, 20.0)
    for e in (ours, peer):
        e['vs_baseline'] = {'latency_1_face_p50': e['latency_1_face']['p50_ms'] / peer_ms,
                            'accuracy_points': 100 * (e['accuracy_val']['accuracy'] - peer_acc),
                            **{f'faces_per_s_batch_{b}': peer_ms / e['latency_1_face']['p50_ms'] for b in (1, 8, 32)}}
    machine = {'cpu_model': 'Test CPU', 'cores_usable': 2, 'cores_online': 2,
               'load_average': {'before_timing': [0.1, 0, 0], 'after_timing': [0.2, 0, 0]}}
    return {'machine': machine, 'threads': 2, 'batches': [1, 8, 32], 'rounds': 3, 'baseline': report.PEER,
            'fer_version': fer_peer.FER_VERSION, 'data': {'n': 100}, 'notes': ['a note'],
            'contenders': {report.OURS_MAIN: ours, report.PEER: peer}}


def _e2e(p95, dropped, cores):
    scenario = {'window_s': 20.0, 'frames_expected_at_target_fps': 600, 'frames_in_window': 600,
                'frames_short_of_target': dropped, 'camera_fps': 30.0, 'frames_with_emotions': 600 - dropped,
                'frames_dropped': dropped, 'dropped_share': dropped / 600, 'faces_per_frame_mean': 1.0,
                'stalls_over_500ms': 0, 'latency': {'p50_ms': p95 / 2, 'p95_ms': p95, 'max_ms': p95 * 2},
                'cpu_cores': {'camera_node': cores / 2, 'face_detector_node': cores / 2}, 'cpu_cores_total': cores}
    return {'machine': {'cpu_model': 'Test CPU'}, 'fps': 30.0, 'size': [640, 480], 'warmup_s': 3, 'window_s': 20,
            'scenarios': {'separate_1_face': scenario}, 'errors': {}}


def test_report_states_goals_met_and_missed(tmp_path):
    (tmp_path / 'classifier.json').write_text(json.dumps(_classifier(ours_ms=1.0, peer_ms=0.4)))
    (tmp_path / 'e2e.json').write_text(json.dumps(_e2e(p95=30.0, dropped=0, cores=1.5)))
    text = report.build(tmp_path)
    goals = text.split('## Goals')[1].split('\n## ')[0]
    assert '1.000 ms | **missed**: 2.0× the goal' in goals           # 0.5 ms per face
    assert '**missed**: 3.0× short' in goals                         # 1,000 vs 3,000 faces/s
    assert '30.0 ms | met' in goals                                  # p95 <= 40 ms
    assert '1.50 cores | **missed**' in goals
    assert '600 of 600 frames' in goals and '-5.0 points vs fer' in goals
    assert 'Test CPU' in text and '2.50×' in text                    # machine, ratio against the peer
    assert 'Not run (bench/results/detectors.json absent)' in text


def test_report_without_results_still_builds(tmp_path):
    text = report.build(tmp_path)
    assert text.startswith('# Benchmarks') and 'Not run' in text


def test_five_face_clip_has_five_detectable_faces(tmp_path):
    import cv2
    from five_faces import write_frames
    from emotion_ros.core.faces.detection import create_detector
    folder = write_frames(tmp_path / 'five', frames=6)
    frames = sorted(folder.glob('*.jpg'))
    assert len(frames) == 6
    detector = create_detector('yunet')
    for path in frames[::2]:
        image = cv2.imread(str(path))
        assert image.shape == (480, 640, 3)
        assert len([b for b in detector.detect(image) if b.score >= 0.6]) == 5


def test_flops_of_a_known_model(tmp_path):
    tf = pytest.importorskip('tensorflow')
    inputs = tf.keras.Input((8, 8, 3), batch_size=1)
    x = tf.keras.layers.Conv2D(4, 3, padding='same')(inputs)                      # 2*8*8*4*3*3*3 = 13,824
    outputs = tf.keras.layers.Dense(5)(tf.keras.layers.Flatten()(x))            # 2*256*5 = 2,560
    model = tf.keras.Model(inputs, outputs)
    path = tmp_path / 'm.tflite'
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    assert tflite_mflops(path) == pytest.approx((13824 + 2560) / 1e6)


def test_fer_preprocessing_matches_fer():
    faces = np.array([[[0, 255], [128, 64]]], np.uint8)
    x = fer_peer.preprocess(faces)
    assert x.shape == (1, 2, 2, 1) and x.dtype == np.float32
    assert x.min() == -1.0 and x.max() == 1.0
    assert x[0, 1, 0, 0] == pytest.approx((128 / 255 - 0.5) * 2, abs=1e-6)
    assert fer_peer.resize_faces(np.zeros((3, 48, 48), np.uint8)).shape == (3, 64, 64)


def test_local_env_and_every_started_process_ends(tmp_path):
    env = local_ros_env(tmp_path)
    assert env['ROS_AUTOMATIC_DISCOVERY_RANGE'] == 'LOCALHOST' and 1 <= int(env['ROS_DOMAIN_ID']) <= 100
    assert Path(env['FASTDDS_DEFAULT_PROFILES_FILE']).is_file() and env['TMPDIR'].startswith(str(tmp_path))
    group = ProcessGroup(handle_signals=False)
    try:
        child = group.start(['sh', '-c', 'sleep 60 & sleep 60'], env, 'sleeper')
        time.sleep(0.3)
        assert len(group_members(child.pid)) == 3                 # sh and both sleeps
        group.stop_all()
        assert child.proc.poll() is not None
        deadline = time.monotonic() + 5
        while group_members(child.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert group_members(child.pid) == []                     # the background sleep too
    finally:
        group.remove_scratch()


def test_cpu_kind_names_the_int8_instructions():
    from machine import cpu_kind
    epyc = {'cpu_model': 'AMD EPYC', 'cpu_flags_simd': ['avx2', 'avx512f', 'avx512_vnni'], 'cores_usable': 2}
    xeon = {'cpu_model': 'Intel(R) Xeon(R) CPU @ 2.00GHz', 'cpu_flags_simd': ['avx2', 'avx512f'], 'cores_usable': 2}
    spr = {'cpu_model': 'Intel(R) Xeon(R) Processor', 'cpu_flags_simd': ['amx_int8', 'avx512_vnni'], 'cores_usable': 2}
    assert (cpu_kind(epyc), cpu_kind(xeon), cpu_kind(spr)) == ('epyc-vnni-2c', 'xeon-avx512-2c', 'xeon-amx-2c')


def test_report_keeps_cpu_kinds_side_by_side(tmp_path):
    results = tmp_path / 'results'
    for kind, p95 in (('epyc-vnni-2c', 12.0), ('xeon-avx512-2c', 84.0)):
        (results / kind).mkdir(parents=True)
        e2e = _e2e(p95=p95, dropped=0, cores=0.5)
        e2e['machine']['cpu_model'] = kind.upper()
        (results / kind / 'e2e.json').write_text(json.dumps(e2e))
    out = tmp_path / 'docs' / 'benchmarks.md'
    assert report.main(['--results', str(results), '--out', str(out)]) == 0
    index = out.read_text()
    assert '| epyc-vnni-2c | xeon-avx512-2c |' in index and '/ 12.0 /' in index and '/ 84.0 /' in index
    assert 'EPYC-VNNI-2C' in (tmp_path / 'docs' / 'benchmarks' / 'epyc-vnni-2c.md').read_text()
    assert 'XEON-AVX512-2C' in (tmp_path / 'docs' / 'benchmarks' / 'xeon-avx512-2c.md').read_text()


def test_report_puts_idle_and_loaded_runs_side_by_side(tmp_path):
    e2e = _e2e(p95=20.0, dropped=0, cores=0.5)
    loaded = json.loads(json.dumps(e2e['scenarios']['separate_1_face']))
    loaded['latency']['p95_ms'] = 60.0
    loaded['background_load'] = {'hogs': 2, 'hog_cpu_cores': [0.7, 0.7], 'load_average_before': [3.1, 2, 1]}
    e2e['scenarios']['separate_1_face_loaded'] = loaded
    (tmp_path / 'e2e.json').write_text(json.dumps(e2e))
    text = report.build(tmp_path)
    assert '| separate_1_face | 100.0% | 20.0 | 0.50 | 100.0% | 60.0 | 0.50 | 3.00× |' in text
    goals = text.split('## Goals')[1].split('\n## ')[0]
    assert '| p95 ≤ 40 ms | three processes, 1 face, 2 CPU hogs | 60.0 ms | **missed**: 1.5× the goal |' in goals
    assert '2 hogs (0.70 + 0.70 cores), load 3.1' in text
