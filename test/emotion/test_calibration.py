"""Calibration files (issue 26): what apply does to scores, and every way a file is refused at load with a
one-line reason (another model, malformed, oversize, non-finite, wrong shape)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from calibration_files import calibration_doc, favouring, model_classes, write_calibration
from emotion_ros.core.emotion.calibration import (MAX_FILE_BYTES, Calibration, CalibrationError, load_calibration,
                                                  parse_calibration, softmax)
from emotion_ros.core.emotion.model import default_model_path
from emotion_ros.core.emotion.pipeline import EmotionPipeline
from emotion_ros.core.emotion.smoothing import ScoreSmoother

CLASSES = model_classes()
C = len(CLASSES)


def probs(n=20, seed=0):
    """Rows of probabilities none of which is below the log floor (so identity is exact to float32)."""
    return softmax(np.random.default_rng(seed).normal(0.0, 1.0, (n, C))).astype(np.float32)


def loaded(tmp_path, **kwargs) -> Calibration:
    return load_calibration(write_calibration(tmp_path / 'cal.json', **kwargs), default_model_path(), CLASSES)


def test_identity_file_changes_nothing(tmp_path):
    cal = loaded(tmp_path, bias=np.zeros(C))
    p = probs()
    np.testing.assert_allclose(cal.apply(p), p, atol=1e-6)


def test_bias_file_shifts_the_argmax_as_the_formula_says(tmp_path):
    p = np.full((1, C), 0.1 / (C - 2), np.float32)
    p[0, CLASSES.index('neutral')], p[0, CLASSES.index('sad')] = 0.6, 0.3
    bias = np.zeros(C)
    bias[CLASSES.index('sad')] = np.log(3.0)     # sad's odds x3: 0.9 against neutral's 0.6
    out = loaded(tmp_path, bias=bias).apply(p)
    assert CLASSES[int(p.argmax())] == 'neutral' and CLASSES[int(out.argmax())] == 'sad'
    expected = p * np.exp(bias)
    np.testing.assert_allclose(out, expected / expected.sum(), rtol=1e-5)
    assert out.dtype == np.float32 and abs(float(out.sum()) - 1.0) < 1e-5


def test_matrix_file_is_softmax_of_w_log_p_plus_b(tmp_path):
    rng = np.random.default_rng(1)
    weight, bias = np.eye(C) + rng.normal(0, 0.2, (C, C)), rng.normal(0, 0.5, C)
    p = probs(seed=2)
    out = loaded(tmp_path, bias=bias, weight=weight).apply(p)
    np.testing.assert_allclose(out, softmax(np.log(p.astype(np.float64)) @ weight.T + bias), atol=1e-6)


def test_unscored_rows_stay_nan_and_others_are_calibrated(tmp_path):
    cal = loaded(tmp_path, bias=favouring('happy'))
    p = probs(4)
    p[1] = np.nan
    p[3, 2] = np.inf
    out = cal.apply(p)
    assert np.isnan(out[1]).all() and np.isnan(out[3]).all()
    assert np.isfinite(out[[0, 2]]).all() and (out[[0, 2]].argmax(1) == CLASSES.index('happy')).all()
    assert cal.apply(np.zeros((0, C), np.float32)).shape == (0, C)


def test_exact_zero_scores_from_int8_models_stay_finite(tmp_path):
    p = np.zeros((1, C), np.float32)
    p[0, 0] = 1.0
    out = loaded(tmp_path, bias=favouring('fear', 20.0)).apply(p)
    assert np.isfinite(out).all() and CLASSES[int(out.argmax())] == 'fear'


def test_pipeline_applies_the_map_before_smoothing_and_swaps_at_runtime(tmp_path):
    class Fixed:
        labels = tuple(CLASSES)

        def predict(self, crops):
            return np.tile(probs(1, seed=5), (len(crops), 1))
    pipe = EmotionPipeline(Fixed(), ScoreSmoother(0.0))
    image = np.full((100, 100), 128, np.uint8)
    raw = pipe.process(image, [(10, 10, 80, 80)], ['a'], t=1.0).faces[0].scores
    pipe.calibration = cal = loaded(tmp_path, bias=favouring('surprise'))
    face = pipe.process(image, [(10, 10, 80, 80)], ['a'], t=2.0).faces[0]
    np.testing.assert_allclose(face.scores, cal.apply(raw[None])[0], atol=1e-6)
    assert face.expression == 'surprise'


def test_the_file_names_itself_for_logs_and_diagnostics(tmp_path):
    cal = loaded(tmp_path, bias=np.zeros(C))
    assert cal.describe.startswith(f'{tmp_path / "cal.json"} (bias, sha ') and len(cal.sha256) == 64


def test_a_file_for_another_model_is_refused(tmp_path):
    other = default_model_path().parent / 'emotion_small.tflite'
    path = write_calibration(tmp_path / 'small.json', bias=np.zeros(C), model_path=other)
    assert load_calibration(path, other, CLASSES).method == 'bias'
    with pytest.raises(CalibrationError, match='fitted for another model') as err:
        load_calibration(path, default_model_path(), CLASSES)
    assert '\n' not in str(err.value) and 'emotion.tflite' in str(err.value)


def test_other_classes_or_order_are_refused(tmp_path):
    swapped = CLASSES[1:] + CLASSES[:1]
    path = write_calibration(tmp_path / 'swapped.json', bias=np.zeros(C), classes=swapped)
    with pytest.raises(CalibrationError, match='classes .* differ'):
        load_calibration(path, default_model_path(), CLASSES)


def _doc(**change):
    doc = calibration_doc(np.zeros(C))
    for key, value in change.items():
        target, *rest = key.split('__')
        if rest:
            doc[target][rest[0]] = value
        else:
            doc[target] = value
    return doc


BAD_DOCS = {
    'not an object': ([1, 2], 'not a calibration file'),
    'other format': (_doc(format='emotion_ros.calibration/9'), 'not a calibration file'),
    'unknown method': (_doc(method='magic'), 'unknown method'),
    'no classes': (_doc(classes=[]), 'classes must be a list'),
    'bias too short': (_doc(parameters__bias=[0.0] * (C - 1)), 'parameters.bias has shape'),
    'weight not square': (_doc(parameters__weight=np.eye(C)[:-1].tolist()), 'parameters.weight has shape'),
    'weight missing': (_doc(parameters__weight=None), 'parameters.weight has shape'),
    'bias text': (_doc(parameters__bias=['a'] * C), 'parameters.bias is not numeric'),
    'ragged weight': (_doc(parameters__weight=[[1.0]] + [[0.0] * C] * (C - 1)), 'parameters.weight'),
    'parameters a list': (_doc(parameters=[1]), 'must be objects'),
    'model a string': (_doc(model='emotion'), 'must be objects'),
    'no model sha': (_doc(model={'name': 'emotion'}), 'model.sha256 is missing'),
    'short model sha': (_doc(model__sha256='abc'), 'model.sha256 is missing'),
    'sha list not a list': (_doc(model__sha256_any_of=7), 'model.sha256 is missing'),
}


@pytest.mark.parametrize('case', sorted(BAD_DOCS))
def test_malformed_documents_are_refused_with_one_line(tmp_path, case):
    doc, reason = BAD_DOCS[case]
    path = tmp_path / 'bad.json'
    path.write_text(json.dumps(doc))
    with pytest.raises(CalibrationError, match=reason) as err:
        load_calibration(path)
    assert '\n' not in str(err.value) and str(path) in str(err.value)


@pytest.mark.parametrize('literal', ['NaN', 'Infinity', '-Infinity', '1e999'])
def test_non_finite_parameters_are_refused(tmp_path, literal):
    text = json.dumps(calibration_doc(np.zeros(C))).replace('"bias": [0.0', f'"bias": [{literal}', 1)
    assert literal in text
    path = tmp_path / 'inf.json'
    path.write_text(text)
    with pytest.raises(CalibrationError, match='non-finite'):
        load_calibration(path)


@pytest.mark.parametrize('content', [b'', b'{"format": ', b'\xff\xfe{}', b'[' * 100_000, b'1' * 5000,
                                     b'{"a": 1} trailing'])
def test_unreadable_json_is_refused_with_one_line(tmp_path, content):
    path = tmp_path / 'broken.json'
    path.write_bytes(content)
    with pytest.raises(CalibrationError) as err:
        load_calibration(path)
    assert '\n' not in str(err.value) and str(path) in str(err.value)


def test_oversize_missing_and_folder_are_refused(tmp_path):
    big = tmp_path / 'big.json'
    big.write_bytes(b' ' * (MAX_FILE_BYTES + 1))
    with pytest.raises(CalibrationError, match='larger than'):
        load_calibration(big)
    with pytest.raises(CalibrationError, match='does not exist'):
        load_calibration(tmp_path / 'missing.json')
    with pytest.raises(CalibrationError, match='does not exist'):
        load_calibration(tmp_path)


def test_parse_keeps_every_export_sha(tmp_path):
    doc = calibration_doc(np.zeros(C))
    doc['model']['sha256_any_of'] = [doc['model']['sha256'], 'f' * 64]
    assert parse_calibration(doc).model_sha256 == (doc['model']['sha256'], 'f' * 64)


def unit_rows(n, d, seed):
    v = np.random.default_rng(seed).normal(0, 1, (n, d))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def prototypes_file(tmp_path, prototypes, alpha):
    from calibration_files import prototypes_doc
    return write_calibration(tmp_path / 'proto.json', doc=prototypes_doc(prototypes, alpha))


def test_prototypes_add_alpha_times_the_cosine_to_each_class(tmp_path):
    protos = unit_rows(C, 256, 4) * 3.0                       # stored unnormalised: load makes them unit rows
    cal = load_calibration(prototypes_file(tmp_path, protos, 5.0), default_model_path(), CLASSES, 256)
    assert cal.needs_embedding and cal.method == 'prototypes'
    p, e = probs(6, seed=3), np.random.default_rng(5).normal(0, 1, (6, 256))
    e[2] = protos[CLASSES.index('fear')] * 0.1               # that face's embedding points at fear's prototype
    unit = e / np.linalg.norm(e, axis=1, keepdims=True)
    expected = softmax(np.log(p.astype(np.float64)) + 5.0 * unit @ (protos / 3.0).T)
    out = cal.apply(p, e)
    np.testing.assert_allclose(out, expected, atol=1e-6)
    assert CLASSES[int(out[2].argmax())] == 'fear'
    p[4] = np.nan
    e[5, 0] = np.inf
    out = cal.apply(p, e)
    assert np.isnan(out[4]).all() and np.isnan(out[5]).all() and np.isfinite(out[:4]).all()
    with pytest.raises(ValueError, match='256-d embedding'):
        cal.apply(p)
    with pytest.raises(ValueError, match='256-d embedding'):
        cal.apply(p, e[:, :100])


def test_prototypes_for_another_embedding_size_are_refused_at_load(tmp_path):
    path = prototypes_file(tmp_path, unit_rows(C, 160, 6), 5.0)
    with pytest.raises(CalibrationError, match='160-d embedding.*gives 256'):
        load_calibration(path, default_model_path(), CLASSES, 256)
    with pytest.raises(CalibrationError, match='gives none'):
        load_calibration(path, default_model_path(), CLASSES, 0)


@pytest.mark.parametrize('change, reason', [
    (lambda p: p.update(alpha=-1.0), 'alpha must be a number'),
    (lambda p: p.update(alpha=True), 'alpha must be a number'),
    (lambda p: p.update(alpha='5'), 'alpha must be a number'),
    (lambda p: p.update(alpha=1e9), 'alpha must be a number'),
    (lambda p: p.pop('alpha'), 'alpha must be a number'),
    (lambda p: p.pop('prototypes'), 'prototypes must be'),
    (lambda p: p.update(prototypes=p['prototypes'][:-1]), 'prototypes has shape'),
    (lambda p: p.update(prototypes=[r[:3] if i == 2 else r for i, r in enumerate(p['prototypes'])]), 'not numeric'),
    (lambda p: p.update(prototypes=[[0.0] * 8] * C), 'zero row'),
    (lambda p: p.update(prototypes=[['a'] * 8] * C), 'not numeric'),
    (lambda p: p.update(prototypes=[[1.0] * 5000] * C), 'prototypes must be'),
])
def test_malformed_prototypes_are_refused_with_one_line(tmp_path, change, reason):
    from calibration_files import prototypes_doc
    doc = prototypes_doc(unit_rows(C, 8, 7), 5.0)
    change(doc['parameters'])
    with pytest.raises(CalibrationError, match=reason) as err:
        parse_calibration(doc, 'p.json')
    assert '\n' not in str(err.value)


def test_pipeline_feeds_the_embedding_to_a_prototype_calibration(tmp_path):
    from emotion_ros.core.emotion.model import EmotionModel
    model = EmotionModel(default_model_path(), num_threads=1)
    cal = load_calibration(prototypes_file(tmp_path, unit_rows(C, model.embedding_dim, 8), 20.0),
                           default_model_path(), CLASSES, model.embedding_dim)
    pipe = EmotionPipeline(model)
    crops = np.random.default_rng(9).integers(0, 256, (3, 48, 48)).astype(np.uint8)
    raw = pipe.predict_crops(crops)
    pipe.calibration = cal
    np.testing.assert_allclose(pipe.predict_crops(crops), cal.apply(*model.predict_with_embedding(crops)), atol=1e-6)
    assert not np.allclose(pipe.predict_crops(crops), raw, atol=1e-3)
