"""emotion-train: import (FaceLabeler with broken rows, class tree), fit artefacts + resume, evaluate
JSON and synonyms, export agreement. Synthetic data made here, so none of it needs ../shared."""
import csv
import json
from collections import namedtuple
from pathlib import Path

import cv2
import numpy as np
import pytest

from emotion_ros.training import importer
from emotion_ros.training.cli import main
from emotion_ros.training.data import load_npz

Box = namedtuple('Box', 'x y w h score')
CLASSES = ['angry', 'disgust', 'fear', 'happy', 'sad', 'surprise', 'neutral']


def synthetic_faces(n, seed=0, classes=7):
    """Class k = a bright blob at position k on noise: learnable in a couple of epochs."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    images = rng.integers(0, 60, (n, 48, 48)).astype(np.uint8)
    for i, k in enumerate(labels):
        r, c = 6 + (k // 3) * 14, 6 + (k % 3) * 14
        images[i, r:r + 10, c:c + 10] = 220
    return images, labels


def write_synthetic_npz(path, n=420, classes=CLASSES, seed=0):
    images, labels = synthetic_faces(n, seed, len(classes))
    split = np.where(np.arange(n) < int(n * 0.75), 'train', 'val')
    votes = np.full((n, 10), -1, np.int16)
    votes[::2] = 0
    votes[::2, 0] = 10
    np.savez(path, images=images, labels=labels.astype(np.int8), classes=np.array(classes), split=split,
             ferplus_votes=votes, ferplus_classes=np.array(['neutral', 'happiness', 'surprise', 'sadness', 'anger',
                                                            'disgust', 'fear', 'contempt', 'unknown', 'NF']))
    return path


class StandInDetector:
    """Finds the bright square we drew, like a real detector would return a FaceBox."""

    def __init__(self):
        self.calls = 0

    def detect(self, bgr):
        self.calls += 1
        gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
        ys, xs = np.nonzero(gray > 200)
        if not len(xs):
            return []
        return [Box(int(xs.min()), int(ys.min()), int(np.ptp(xs)) + 1, int(np.ptp(ys)) + 1, 0.9)]


# --- import -------------------------------------------------------------------------------------
def make_facelabeler(root: Path):
    images = root / 'Images'
    images.mkdir(parents=True)
    with open(root / 'labelList.csv', 'w', newline='') as f:
        csv.writer(f).writerows([(0, 'Angry'), (1, 'Happy'), (2, 'Sad')])
    crops, _ = synthetic_faces(3, seed=1)
    rows = []
    for i, crop in enumerate(crops):
        cv2.imwrite(str(images / f'face{i}.png'), crop)
        rows.append((f'face{i}.png', ['Angry', 'happiness', 'Sad'][i]))
    big = np.full((200, 300, 3), 40, np.uint8)
    big[50:130, 100:180] = 230
    cv2.imwrite(str(images / 'face3.png'), big)                  # needs the detector
    rows.append(('face3.png', 'Happy'))
    cv2.imwrite(str(images / 'face4.png'), np.full((200, 300, 3), 40, np.uint8))   # no face in it
    rows.append(('face4.png', 'Sad'))
    (images / 'face5.png').write_bytes(b'not a png at all')        # unreadable
    rows.append(('face5.png', 'Angry'))
    cv2.imwrite(str(images / 'face6.png'), crops[0])
    rows.append(('face6.png', 'Bored'))                          # unknown label
    rows.append(('face7.png', 'Happy'))                          # row without file
    cv2.imwrite(str(images / 'face8.png'), crops[1])             # file without row
    with open(root / 'faceLabels.csv', 'w', newline='') as f:
        f.write('\n'.join(f'{a},{b}' for a, b in rows) + '\nbroken-row-without-label\n')
    return rows


def test_import_facelabeler_reports_every_problem(tmp_path):
    root = tmp_path / 'fl'
    rows = make_facelabeler(root)
    det = StandInDetector()
    arrays, report = importer.import_dataset(root, detector=det, progress=False)
    assert report.kind == 'facelabeler'
    assert list(arrays['classes']) == ['angry', 'happy', 'sad']
    assert report.imported == 4 and arrays['images'].shape == (4, 48, 48)
    assert list(arrays['source']) == ['Images/face0.png', 'Images/face1.png', 'Images/face2.png', 'Images/face3.png']
    assert list(arrays['labels']) == [0, 1, 2, 1]
    assert det.calls == 2                                        # only the two big images were detected on
    assert report.no_face == ['Images/face4.png']
    assert len(report.unreadable) == 1 and report.unreadable[0].startswith('Images/face5.png: not a readable image')
    assert len(report.unknown_labels) == 1 and 'Bored' in report.unknown_labels[0]
    assert len(report.rows_without_files) == 1 and 'face7.png' in report.rows_without_files[0]
    assert report.files_without_rows == ['Images/face8.png']
    assert any('broken-row-without-label' in p for p in report.problems)
    # nothing lost: every row and every file is either imported or named in the report
    assert report.imported + report.skipped == len(rows) + 1
    crop = arrays['images'][3]
    assert crop[24, 24] > 200                                    # the detected "face" fills the crop


def test_import_cli_writes_npz_atomically_and_report(tmp_path, monkeypatch):
    root = tmp_path / 'tree'
    crops, _ = synthetic_faces(4, seed=2)
    for i, (name, crop) in enumerate(zip(['Anger', 'happiness', 'happiness', 'Scared'], crops)):
        (root / name).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / name / f'{i}.png'), crop)
    (root / 'happiness' / 'notes.txt').write_text('x')
    out = tmp_path / 'out' / 'ds.npz'
    rc = main(['import', str(root), '--out', str(out), '--crop', 'never', '--quiet',
               '--classes', ','.join(CLASSES)])
    assert rc == 0
    ds = load_npz(out)
    assert ds.classes == CLASSES and len(ds) == 4
    assert sorted(ds.labels.tolist()) == [0, 2, 3, 3]
    report = json.loads((tmp_path / 'out' / 'ds.npz.report.json').read_text())
    assert report['imported'] == 4 and len(report['unreadable']) == 1
    assert [p.name for p in out.parent.iterdir() if p.name.startswith('.')] == []
    assert main(['import', str(root), '--out', str(out), '--crop', 'never', '--quiet', '--strict',
                 '--classes', ','.join(CLASSES)]) == 1
    assert main(['import', str(tmp_path / 'nothing-here'), '--out', str(out), '--quiet']) == 2


# --- fit / evaluate / export --------------------------------------------------------------------
@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    base = tmp_path_factory.mktemp('fit')
    data = write_synthetic_npz(base / 'syn.npz')
    run = base / 'run'
    rc = main(['fit', '--data', str(data), '--run-dir', str(run), '--arch', 'emonet', '--width', '8',
               '--epochs', '2', '--batch-size', '32', '--lr', '3e-3', '--ferplus-weight', '0.3', '--seed', '3'])
    assert rc == 0
    return data, run


@pytest.mark.slow
def test_fit_produces_every_artefact(trained):
    data, run = trained
    for name in ('command.txt', 'config.json', 'best.keras', 'labels.txt', 'history.json', 'metrics.json',
                 'curves.png', 'confusion_val.png', 'checkpoints/last.keras', 'checkpoints/state.json'):
        assert (run / name).is_file(), name
    assert 'seed=3' in (run / 'command.txt').read_text()
    metrics = json.loads((run / 'metrics.json').read_text())
    assert metrics['epochs_run'] == 2 and metrics['classes'] == CLASSES
    assert set(metrics['val']) >= {'n', 'accuracy', 'macro_f1', 'per_class', 'confusion'}
    assert metrics['holdout']['n'] > 0 and metrics['split']['val'] == 105
    assert json.loads((run / 'checkpoints' / 'state.json').read_text())['epoch'] == 2
    assert (run / 'curves.png').read_bytes()[:4] == b'\x89PNG'


@pytest.mark.slow
def test_fit_refuses_to_overwrite_and_resumes(trained, tmp_path):
    data, run = trained
    with pytest.raises(SystemExit, match='--resume'):
        main(['fit', '--data', str(data), '--run-dir', str(run), '--epochs', '3'])
    import shutil
    copy = tmp_path / 'run'
    shutil.copytree(run, copy)
    assert main(['fit', '--data', str(data), '--run-dir', str(copy), '--arch', 'emonet', '--width', '8',
                 '--epochs', '3', '--batch-size', '32', '--seed', '3', '--resume']) == 0
    state = json.loads((copy / 'checkpoints' / 'state.json').read_text())
    assert state['epoch'] == 3 and len(state['history']['loss']) == 3


@pytest.mark.slow
def test_export_agrees_with_keras(trained, tmp_path):
    data, run = trained
    out = tmp_path / 'export'
    rc = main(['export', '--model', str(run / 'best.keras'), '--out-dir', str(out), '--name', 'm',
               '--data', str(data), '--sample', '100'])
    assert rc == 0
    report_f = out / 'm.tflite'
    assert report_f.is_file() and (out / 'm.labels.txt').read_text().split() == CLASSES
    assert (out / 'm_int8.tflite').is_file() and (out / 'm_int8.tflite').stat().st_size < report_f.stat().st_size
    from emotion_ros.training.export import agreement
    import keras
    model = keras.models.load_model(run / 'best.keras')
    images = load_npz(data).images[:64]
    a = agreement(model, report_f, images)
    assert a['top1_agreement'] >= 0.99 and a['max_abs_prob_diff'] < 1e-3
    assert main(['export', '--model', str(run / 'best.keras'), '--out-dir', str(out), '--name', 'tta',
                 '--data', str(data), '--sample', '100', '--no-int8', '--tta-flip']) == 0
    assert (out / 'tta.tflite').is_file()


@pytest.mark.slow
def test_export_of_several_models_is_their_average(trained, tmp_path, capsys):
    import keras
    from emotion_ros.core.emotion.model import EmotionModel
    from emotion_ros.training.models import build_emonet
    data, run = trained
    other = tmp_path / 'other.keras'
    keras.utils.set_random_seed(11)
    build_emonet(len(CLASSES), width=8).save(other)
    (tmp_path / 'other.labels.txt').write_text('\n'.join(CLASSES) + '\n')
    out = tmp_path / 'ens'
    assert main(['export', '--model', str(run / 'best.keras'), '--model', str(other), '--out-dir', str(out),
                 '--name', 'ens', '--no-int8']) == 0
    images = load_npz(data).images[:64]
    x = images[..., None].astype(np.float32)
    a, b = (keras.models.load_model(p).predict(x, verbose=0) for p in (run / 'best.keras', other))
    got = EmotionModel(out / 'ens.tflite', num_threads=1).predict(images)
    np.testing.assert_allclose(got, (a + b) / 2, atol=1e-4)
    assert np.abs(got - a).max() > 1e-2 and np.abs(got - b).max() > 1e-2
    (tmp_path / 'other.labels.txt').write_text('\n'.join(reversed(CLASSES)) + '\n')
    capsys.readouterr()
    assert main(['export', '--model', str(run / 'best.keras'), '--model', str(other), '--out-dir', str(out),
                 '--name', 'bad', '--no-int8']) == 2
    assert 'members must agree' in capsys.readouterr().err and not (out / 'bad.tflite').exists()


@pytest.mark.slow
def test_evaluate_json_and_synonyms(trained, tmp_path, capsys):
    data, run = trained
    main(['export', '--model', str(run / 'best.keras'), '--out-dir', str(tmp_path), '--name', 'm', '--no-int8'])
    capsys.readouterr()
    other = write_synthetic_npz(tmp_path / 'other.npz', n=140, seed=5,
                                classes=['anger', 'disgusted', 'scared', 'happiness', 'sadness', 'surprised',
                                         'contempt'])
    rc = main(['evaluate', '--data', str(other), '--model', str(tmp_path / 'm.tflite'), '--json'])
    captured = capsys.readouterr()
    assert rc == 0
    result = json.loads(captured.out)
    assert set(result) >= {'n', 'accuracy', 'macro_f1', 'per_class', 'confusion'}
    n_contempt = int((load_npz(other).labels == 6).sum())
    assert result['n'] == 140 - n_contempt
    assert result['skipped_classes'] == {'contempt': n_contempt} and 'contempt' in captured.err
    assert list(result['per_class']) == CLASSES and result['per_class']['neutral'] is None
    assert np.array(result['confusion']).shape == (7, 7) and np.array(result['confusion']).sum() == result['n']
    keras_rc = main(['evaluate', '--data', str(other), '--model', str(run / 'best.keras'), '--json'])
    keras_result = json.loads(capsys.readouterr().out)
    assert keras_rc == 0 and keras_result['accuracy'] == pytest.approx(result['accuracy'], abs=0.02)
    assert main(['evaluate', '--data', str(tmp_path / 'missing.npz'), '--json']) == 2
    fit_holdout = json.loads((run / 'metrics.json').read_text())['holdout']
    assert main(['evaluate', '--data', str(data), '--model', str(run / 'best.keras'), '--split', 'holdout',
                 '--holdout-seed', '3', '--json']) == 0
    again = json.loads(capsys.readouterr().out)
    assert again['n'] == fit_holdout['n'] and again['confusion'] == fit_holdout['confusion']
