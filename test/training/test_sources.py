"""Several training sources in one fit: spec parsing, by-person validation splits, classes a source lacks,
per-source sampling weights, robot-camera augmentation, and a run that reports and selects on every
validation set and resumes where it stopped. Synthetic data made here (no ../shared needed)."""
import json

import numpy as np
import pytest

from emotion_ros.training import data as D
from emotion_ros.training import sources as S
from emotion_ros.training.cli import main
from test_training import CLASSES, synthetic_faces, write_synthetic_npz


def write_people_npz(path, people=12, per_person=14, with_contempt=True, seed=1):
    """A studio-like source: no split array, a `subject` per image, and (optionally) an 8th class."""
    classes = CLASSES + (['contempt'] if with_contempt else [])
    n = people * per_person
    images, labels = synthetic_faces(n, seed, len(classes))
    subject = np.repeat([f'P{i:02d}' for i in range(people)], per_person)
    np.savez(path, images=images, labels=labels.astype(np.int8), classes=np.array(classes), subject=subject)
    return path


def test_spec_names_paths_and_weights():
    assert S.parse_spec('kdef=../x/kdef_dev.npz:8') == ('kdef', '../x/kdef_dev.npz', 8.0)
    assert S.parse_spec('../shared/fer2013_trainval.npz') == ('fer2013', '../shared/fer2013_trainval.npz', 1.0)
    assert S.parse_spec('mux=m.npz:0.25')[2] == 0.25
    assert S.parse_fractions('0.4,mux=0.1') == (0.4, {'mux': 0.1})
    with pytest.raises(SystemExit, match='fractions'):
        S.parse_fractions('1.5')


def test_people_never_straddle_train_and_val_and_missing_classes_are_dropped(tmp_path):
    path = write_people_npz(tmp_path / 'people.npz')
    primary = write_synthetic_npz(tmp_path / 'syn.npz')
    sources = S.load_sources([str(primary), f'studio={path}:3'], 0.05, 1, '0.5', 7)
    studio = sources[1]
    assert not set(studio.train.subject) & set(studio.val.subject)
    assert len(set(studio.val.subject)) == 6 and studio.info['split_by'].startswith('subject')
    raw = D.load_npz(path)
    assert studio.info['dropped_classes'] == {'contempt': int((raw.labels == 7).sum())}
    assert studio.train.classes == CLASSES and studio.train.labels.max() < len(CLASSES)
    # the same seed gives the same people; another seed other people
    again = S.load_sources([str(primary), f'studio={path}'], 0.05, 1, '0.5', 7)[1]
    other = S.load_sources([str(primary), f'studio={path}'], 0.05, 1, '0.5', 8)[1]
    assert set(again.val.subject) == set(studio.val.subject) != set(other.val.subject)
    only_val = S.load_sources([str(primary), f'studio={path}:0'], 0.05, 1, '0.5', 7)[1]
    assert len(only_val.train) == 0 and len(only_val.val) == len(raw.labels) - studio.info['dropped_classes']['contempt']


def test_epoch_plan_draws_each_source_by_its_weight():
    sizes, weights = [1000, 50, 400], [1.0, 6.0, 0.25]
    plan = S.epoch_plan(sizes, weights, epoch=3, seed=1)
    counts = np.bincount(np.searchsorted(np.cumsum(sizes), plan, side='right'), minlength=3)
    assert counts.tolist() == [1000, 300, 100] == [int(n * w) for n, w in zip(sizes, weights)]
    assert len(S.epoch_plan(sizes, weights, epoch=3, seed=1)) == S.epoch_size(sizes, weights)
    assert (S.epoch_plan(sizes, weights, 3, 1) == plan).all()                       # resumable: same epoch, same draw
    assert not (S.epoch_plan(sizes, weights, 4, 1) == plan).all()
    w = D.class_weights(np.array([0] * 90 + [1] * 10), 2, 'balanced', sample_weight=[1] * 90 + [9] * 10)
    assert w[0] == pytest.approx(w[1])                                                # drawn 90 : 90 -> equal weights


def test_robot_camera_augmentation_changes_pixels_but_keeps_range():
    import tensorflow as tf
    x = tf.constant(synthetic_faces(16)[0][..., None].astype(np.float32))
    a = D.augment_batch(x, tf.constant(1, tf.int64)).numpy()
    b = D.augment_batch(x, tf.constant(1, tf.int64), robot_camera=True).numpy()
    assert a.shape == b.shape and 0 <= b.min() and b.max() <= 255
    assert np.abs(a - b).mean() > 1.0


@pytest.mark.slow
def test_multi_source_fit_reports_and_selects_on_every_source_and_resumes(tmp_path):
    primary = write_synthetic_npz(tmp_path / 'syn.npz')
    studio = write_people_npz(tmp_path / 'people.npz')
    run = tmp_path / 'run'
    cmd = ['fit', '--data', str(primary), '--data', f'studio={studio}:4', '--run-dir', str(run), '--arch', 'emonet',
           '--width', '8', '--batch-size', '32', '--lr', '3e-3', '--seed', '3', '--robot-camera-aug',
           '--select-on', 'syn,studio']
    assert main(cmd + ['--epochs', '1']) == 0
    assert main(cmd + ['--epochs', '2', '--resume']) == 0
    metrics = json.loads((run / 'metrics.json').read_text())
    assert metrics['epochs_run'] == 2 and metrics['select_on'] == ['syn', 'studio']
    assert 'mean accuracy' in metrics['selection_rule']
    for name in ('syn', 'studio'):
        v = metrics['sources'][name]['val']
        assert set(v) >= {'n', 'accuracy', 'macro_f1', 'per_class', 'confusion'}
        assert (run / f'confusion_val_{name}.png').stat().st_size > 0
    assert metrics['sources']['studio']['split']['dropped_classes']
    history = json.loads((run / 'history.json').read_text())
    assert len(history['val_studio_accuracy']) == 2 and len(history['select_score']) == 2
    best = int(np.argmax(history['select_score'])) + 1
    assert metrics['best_epoch'] == best
    with pytest.raises(SystemExit, match='no validation set'):
        main(['fit', '--data', str(primary), '--run-dir', str(tmp_path / 'r2'), '--select-on', 'nope', '--epochs', '1'])
