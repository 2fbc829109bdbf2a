"""emotion-train calibrate (issue 26) on faces whose labels a per-class bias can learn, in the three input kinds
(shared-format npz, FaceLabeler folder, dataset recorder folder); its refusals (too few faces, no held-out gain)
write nothing; the file it writes records what it was fitted on and loads back; evaluate --calibration.

The faces are synthetic (upscaled noise) scored by the shipped default model; label = the class whose score is
furthest above its own mean over the set, which one bias per class recovers exactly. No ../shared needed,
except for the one loader check on kdef_dev (skipped without it).
"""
from __future__ import annotations

import csv
import json
import sys

import cv2
import numpy as np
import pytest

from calibration_files import model_classes
from conftest import require_shared
from emotion_ros.core.dataset.facelabeler import DatasetWriter
from emotion_ros.core.emotion.calibration import file_sha256, load_calibration, log_probs
from emotion_ros.core.emotion.model import EmotionModel, default_model_path
from emotion_ros.training.calibrate import METHODS, MIN_PER_CLASS, load_calibration_data
from emotion_ros.training.cli import main

CLASSES = model_classes()
C = len(CLASSES)


@pytest.fixture(scope='module')
def scored():
    """(images, log-probabilities) of 6000 upscaled-noise faces under the default model."""
    rng = np.random.default_rng(0)
    images = np.stack([cv2.resize(rng.integers(0, 256, (k, k)).astype(np.uint8), (48, 48),
                                  interpolation=cv2.INTER_CUBIC) for k in rng.integers(1, 12, 6000)])
    return images, log_probs(EmotionModel(default_model_path(), num_threads=1).predict(images))


@pytest.fixture(scope='module')
def learnable(scored):
    """350 faces labelled so that a bias (minus each class's mean log-probability) is right on all of them."""
    images, z = scored[0][:350], scored[1][:350]
    labels = (z - z.mean(0)).argmax(1)
    assert np.bincount(labels, minlength=C).min() >= 10, 'the synthetic set must hold every class'
    assert (z.argmax(1) == labels).mean() < 0.7, 'the model as it is must get many of them wrong'
    return images, labels


def write_npz(path, images, labels, subject=None):
    extra = {} if subject is None else {'subject': np.asarray(subject).astype(str)}
    np.savez(path, images=images, labels=labels.astype(np.int8), classes=np.array(CLASSES), **extra)
    return path


def calibrate(monkeypatch, capsys, *args):
    """Run `emotion-train calibrate ARGS` in this process as the console script would: (rc, stdout, stderr)."""
    argv = ['calibrate', *map(str, args)]
    monkeypatch.setattr(sys, 'argv', ['emotion-train', *argv])
    rc = main(argv)
    out = capsys.readouterr()
    return rc, out.out, out.err


def check_written(path, data, labels, folds_by, min_gain):
    """The file records model, classes, counts, parameters and command, loads back, and helps on `data`."""
    doc = json.loads(path.read_text())
    assert doc['model']['sha256'] == file_sha256(default_model_path())
    assert doc['classes'] == CLASSES and doc['method'] in METHODS
    assert doc['data']['per_class'] == {c: int((labels == i).sum()) for i, c in enumerate(CLASSES)}
    assert doc['data']['n'] == len(labels) and doc['data']['path'] == str(data)
    assert np.asarray(doc['parameters']['weight']).shape == (C, C) and len(doc['parameters']['bias']) == C
    assert doc['command'].startswith('emotion-train calibrate --data ') and str(path) in doc['command']
    assert doc['cv']['folds_by'] == folds_by and doc['cv']['gain'] >= min_gain, doc['cv']
    assert doc['cv']['gain'] == pytest.approx(doc['cv']['accuracy'] - doc['cv']['baseline_accuracy'])
    return doc, load_calibration(path, default_model_path(), CLASSES)


def test_npz_with_subjects_writes_a_file_that_loads_back_and_helps(tmp_path, monkeypatch, capsys, learnable,
                                                                   scored):
    images, labels = learnable
    data = write_npz(tmp_path / 'faces.npz', images, labels, subject=[f'p{i % 5}' for i in range(len(labels))])
    out = tmp_path / 'cal.json'
    rc, stdout, stderr = calibrate(monkeypatch, capsys, '--data', data, '--out', out)
    assert rc == 0, stderr
    assert '5 folds by subject' in stdout and 'gain +' in stdout and str(out) in stdout
    doc, cal = check_written(out, data, labels, 'subject', 0.3)
    assert doc['data']['groups'] == 5
    z = scored[1][:350]
    before = (z.argmax(1) == labels).mean()
    after = (cal.apply(np.exp(z)).argmax(1) == labels).mean()
    assert after >= before + 0.3 and after > 0.9

    # evaluate --calibration scores through the file and says which one it was
    rc = main(['evaluate', '--data', str(data), '--json'])
    plain = json.loads(capsys.readouterr().out)
    rc2 = main(['evaluate', '--data', str(data), '--json', '--calibration', str(out)])
    calibrated = json.loads(capsys.readouterr().out)
    assert rc == rc2 == 0
    assert plain['calibration'] is None and plain['accuracy'] == pytest.approx(before)
    assert calibrated['calibration'] == {'path': str(out), 'sha256': cal.sha256, 'method': cal.method}
    assert calibrated['accuracy'] == pytest.approx(after, abs=1e-9)
    assert main(['evaluate', '--data', str(data), '--calibration', str(out)]) == 0
    assert f'calibration={out} ({cal.method}, sha {cal.sha256[:8]})' in capsys.readouterr().out


def test_evaluate_refuses_a_calibration_of_another_model(tmp_path, monkeypatch, capsys, learnable):
    images, labels = learnable
    data = write_npz(tmp_path / 'faces.npz', images, labels, subject=[f'p{i % 5}' for i in range(len(labels))])
    out = tmp_path / 'cal.json'
    assert calibrate(monkeypatch, capsys, '--data', data, '--out', out)[0] == 0
    small = default_model_path().parent / 'emotion_small.tflite'
    assert main(['evaluate', '--data', str(data), '--model', str(small), '--calibration', str(out)]) == 2
    got = capsys.readouterr()
    lines = got.err.strip().splitlines()
    assert got.out == '' and len(lines) == 1 and 'fitted for another model' in lines[0], got.err
    assert main(['evaluate', '--data', str(data), '--calibration', str(tmp_path / 'none.json')]) == 2
    assert 'does not exist' in capsys.readouterr().err


def test_too_few_faces_of_a_class_is_refused_and_nothing_written(tmp_path, monkeypatch, capsys, learnable):
    images, labels = learnable
    fear = np.flatnonzero(labels == CLASSES.index('fear'))
    keep = np.setdiff1d(np.arange(len(labels)), fear[MIN_PER_CLASS - 1:])   # one fear face short
    data = write_npz(tmp_path / 'faces.npz', images[keep], labels[keep], subject=[f'p{i % 5}' for i in keep])
    out = tmp_path / 'cal.json'
    rc, stdout, stderr = calibrate(monkeypatch, capsys, '--data', data, '--out', out)
    assert rc == 1 and not out.exists() and list(tmp_path.iterdir()) == [data]
    assert 'refused, nothing written: too few faces per class' in stderr and f'fear {MIN_PER_CLASS - 1}' in stderr


def test_no_held_out_gain_is_refused_and_nothing_written(tmp_path, monkeypatch, capsys):
    # Studio faces (on noise the default never says every class) labelled as the model already says: no map
    # can do better than it on held-out faces.
    with np.load(require_shared('datasets', 'kdef_dev', 'kdef_dev.npz')) as d:
        images = d['images']
    raw = EmotionModel(default_model_path(), num_threads=1).predict(images).argmax(1)
    pick = np.concatenate([np.flatnonzero(raw == c)[:12] for c in range(C)])
    assert np.bincount(raw[pick], minlength=C).min() >= MIN_PER_CLASS + 1, 'every class must be the argmax somewhere'
    data = write_npz(tmp_path / 'faces.npz', images[pick], raw[pick], subject=[f'p{i % 4}' for i in range(len(pick))])
    out = tmp_path / 'cal.json'
    rc, stdout, stderr = calibrate(monkeypatch, capsys, '--data', data, '--out', out)
    assert rc == 1 and not out.exists() and list(tmp_path.iterdir()) == [data]
    assert 'refused, nothing written: no candidate beats the model on held-out folds' in stderr
    assert 'uncalibrated 100.0%' in stderr


def write_facelabeler(root, images, labels):
    """A folder as FaceLabeler (github.com/ablacklama/FaceLabeler) leaves it: faces labelled in any order."""
    (root / 'Images').mkdir(parents=True)
    with open(root / 'labelList.csv', 'w', newline='') as f:
        csv.writer(f, quotechar='|', lineterminator='\n').writerows(enumerate(CLASSES))
    with open(root / 'faceLabels.csv', 'w', newline='') as f:
        w = csv.writer(f, quotechar='|', lineterminator='\n')
        for i, (image, label) in enumerate(zip(images, labels)):
            cv2.imwrite(str(root / 'Images' / f'face{i}.png'), image)
            w.writerow([f'face{i}.png', CLASSES[label]])
    return root


def test_facelabeler_folder(tmp_path, monkeypatch, capsys, learnable):
    images, labels = learnable
    data = write_facelabeler(tmp_path / 'labelled', images, labels)
    out = tmp_path / 'cal.json'
    rc, stdout, stderr = calibrate(monkeypatch, capsys, '--data', data, '--out', out)
    assert rc == 0, stderr
    assert 'folds by file order within each class' in stderr   # the optimistic-gain note
    check_written(out, data, labels, 'file order within each class', 0.08)


def test_dataset_recorder_folder(tmp_path, monkeypatch, capsys, learnable):
    """What `ros2 service call /dataset_recorder/capture ...` leaves: one burst per call, each of one label, written
    by the recorder's DatasetWriter. Folds by burst would hold out a whole class at a time (a map fitted without
    that class cannot be judged on it); folds by file order within each class keep every class in every fold."""
    images, labels = learnable
    data = tmp_path / 'recorded'
    writer = DatasetWriter(data)
    for c in range(C):                       # capture label=<c> count=<n>, one class after the other
        for i in np.flatnonzero(labels == c):
            writer.save(images[i], CLASSES[c])
    order = np.concatenate([np.flatnonzero(labels == c) for c in range(C)])
    got = load_calibration_data(data)
    np.testing.assert_array_equal(got[0], images[order])   # the loader reads back the exact pixels
    np.testing.assert_array_equal(got[1], labels[order])
    out = tmp_path / 'cal.json'
    rc, stdout, stderr = calibrate(monkeypatch, capsys, '--data', data, '--out', out)
    assert rc == 0, stderr
    # +12.6 points on these faces (folds by burst, one class each: +2.0, under the same strong pull to no change)
    doc, _ = check_written(out, data, labels, 'file order within each class', 0.08)
    assert doc['data']['groups'] == 5


def test_a_bad_data_path_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    rc, stdout, stderr = calibrate(monkeypatch, capsys, '--data', tmp_path / 'nothing', '--out', tmp_path / 'c.json')
    assert rc == 2 and len(stderr.strip().splitlines()) == 1 and 'not a folder or an .npz file' in stderr
    assert not (tmp_path / 'c.json').exists()


def test_the_shared_kdef_npz_is_read_with_its_subjects():
    images, labels, classes, subject, session, chunks, _ = load_calibration_data(
        require_shared('datasets', 'kdef_dev', 'kdef_dev.npz'))
    assert images.shape[1:] == (48, 48) and images.dtype == np.uint8 and len(labels) == len(images)
    assert classes == CLASSES and len(np.unique(subject)) >= 30 and set(session) == {'A', 'B'} and chunks is None


@pytest.fixture(scope='module')
def regions(scored):
    """(images, labels, probs, embeddings): 420 faces labelled by the nearest of seven embedding directions."""
    model = EmotionModel(default_model_path(), num_threads=1)
    images = scored[0][:420]
    probs, e = model.predict_with_embedding(images)
    unit = e / np.linalg.norm(e, axis=1, keepdims=True)
    centred = unit - unit.mean(0)
    centres = centred[np.random.default_rng(1).choice(len(images), C, replace=False)]
    labels = (centred @ centres.T).argmax(1)
    assert np.bincount(labels, minlength=C).min() >= 10, 'every class must have faces'
    return images, labels, probs, e


def test_prototypes_win_where_the_classes_are_regions_of_the_embedding(tmp_path, monkeypatch, capsys, regions):
    """Labels by the nearest of seven embedding directions: no map on the log-probabilities recovers them,
    class prototypes do; the file carries them and scores through evaluate --calibration as fitted."""
    images, labels, probs, e = regions
    model = EmotionModel(default_model_path(), num_threads=1)
    data = write_npz(tmp_path / 'faces.npz', images, labels, subject=[f'p{i % 6}' for i in range(len(labels))])
    out = tmp_path / 'cal.json'
    rc, stdout, stderr = calibrate(monkeypatch, capsys, '--data', data, '--out', out)
    assert rc == 0, stderr
    doc = json.loads(out.read_text())
    assert doc['method'] == 'prototypes' and 'with prototypes (alpha ' in stdout, doc['cv']
    assert {c['method'] for c in doc['cv']['candidates']} >= set(METHODS) | {'prototypes', 'identity'}
    maps = max(c['accuracy'] for c in doc['cv']['candidates'] if c['method'] != 'prototypes')
    assert doc['cv']['accuracy'] > maps, doc['cv']
    assert np.asarray(doc['parameters']['prototypes']).shape == (C, model.embedding_dim)
    cal = load_calibration(out, default_model_path(), CLASSES, model.embedding_dim)
    after = (cal.apply(probs, e).argmax(1) == labels).mean()
    assert after >= (probs.argmax(1) == labels).mean() + 0.3
    assert main(['evaluate', '--data', str(data), '--json', '--calibration', str(out)]) == 0
    assert json.loads(capsys.readouterr().out)['accuracy'] == pytest.approx(after, abs=1e-9)


def test_prototypes_do_not_compete_when_the_folds_are_not_people(tmp_path, monkeypatch, capsys, learnable):
    images, labels = learnable
    data = write_npz(tmp_path / 'faces.npz', images, labels)   # no subjects: folds by image
    out = tmp_path / 'cal.json'
    assert calibrate(monkeypatch, capsys, '--data', data, '--out', out)[0] == 0
    doc = json.loads(out.read_text())
    assert doc['cv']['folds_by'] == 'image' and 'prototypes' not in {c['method'] for c in doc['cv']['candidates']}


def test_one_recorder_folder_per_person_folds_by_person(tmp_path, monkeypatch, capsys, regions):
    """`--data alice=DIR --data bob=DIR --data DIR`: the household recorded one folder per person; the folds are
    by person (named, or the folder's name), so prototypes compete; one person twice is refused."""
    images, labels, _, _ = regions
    folders = [tmp_path / name for name in ('a', 'b', 'carol')]
    for k, folder in enumerate(folders):
        writer = DatasetWriter(folder)
        for i in range(k, len(labels), 3):
            writer.save(images[i], CLASSES[labels[i]])
    out = tmp_path / 'cal.json'
    rc, stdout, stderr = calibrate(monkeypatch, capsys, '--data', f'alice={folders[0]}', '--data',
                                   f'bob={folders[1]}', '--data', folders[2], '--out', out)
    assert rc == 0, stderr
    assert '3 folds by subject' in stdout and 'optimistic' not in stderr
    doc = json.loads(out.read_text())
    assert doc['data']['path'] == [f'alice={folders[0]}', f'bob={folders[1]}', str(folders[2])]
    assert doc['data']['n'] == len(labels) and doc['cv']['folds_by'] == 'subject' and doc['method'] == 'prototypes'
    rc, _, stderr = calibrate(monkeypatch, capsys, '--data', f'alice={folders[0]}', '--data', f'alice={folders[1]}',
                              '--out', tmp_path / 'twice.json')
    assert rc == 2 and 'name the same person' in stderr and not (tmp_path / 'twice.json').exists()
