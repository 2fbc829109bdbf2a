"""Calibration files under Hypothesis (issue 26): any JSON value in any field of a valid bias or prototypes
document, and any bytes as the model file for the embedding reader, end in a loaded calibration whose scores are
finite rows summing to 1, or in the one refusal each API promises (CalibrationError, EmbeddingUnavailable);
never another exception."""
import json

import numpy as np
import pytest

from calibration_files import calibration_doc, model_classes, prototypes_doc
from emotion_ros.core.emotion.calibration import CalibrationError, load_calibration
from emotion_ros.core.emotion.embedding import EmbeddingUnavailable, with_embedding_output
from emotion_ros.core.emotion.model import default_model_path

hypothesis = pytest.importorskip('hypothesis')
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

CLASSES = model_classes()
C = len(CLASSES)
DIM = 256
SETTINGS = dict(max_examples=150, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=9) | st.dictionaries(st.text(max_size=5), inner,
                                                                                       max_size=4),
                           max_leaves=40)


def base_docs():
    rng = np.random.default_rng(0)
    return [calibration_doc(rng.normal(0, 1, C)), prototypes_doc(rng.normal(0, 1, (C, DIM)), 5.0)]


FIELDS = [('method',), ('classes',), ('model',), ('parameters',), ('parameters', 'weight'), ('parameters', 'bias'),
          ('parameters', 'alpha'), ('parameters', 'prototypes'), ('model', 'sha256')]


@settings(**SETTINGS)
@given(which=st.integers(0, 1), field=st.sampled_from(FIELDS), value=json_values, row=st.integers(0, C - 1))
def test_any_value_in_any_field_loads_cleanly_or_is_refused(tmp_path, which, field, value, row):
    doc = base_docs()[which]
    target = doc
    for key in field[:-1]:
        target = target[key]
    if field == ('parameters', 'prototypes') and row % 2 and which == 1:
        target['prototypes'][row] = value          # one bad row among good ones
    else:
        target[field[-1]] = value
    try:
        path = tmp_path / 'cal.json'
        path.write_text(json.dumps(doc, allow_nan=True))
    except (TypeError, ValueError):
        return
    try:
        cal = load_calibration(path, default_model_path(), CLASSES, DIM)
    except CalibrationError as exc:
        assert '\n' not in str(exc)
        return
    rng = np.random.default_rng(1)
    p = rng.dirichlet(np.ones(C), 5).astype(np.float32)
    out = cal.apply(p, rng.normal(0, 1, (5, DIM)) if cal.needs_embedding else None)
    assert out.shape == (5, C) and np.isfinite(out).all() and np.allclose(out.sum(1), 1.0, atol=1e-4)


MODEL = (default_model_path()).read_bytes()


@settings(**SETTINGS)
@given(cut=st.integers(0, len(MODEL)), flips=st.lists(st.tuples(st.integers(0, len(MODEL) - 1),
                                                                st.integers(0, 255)), max_size=6))
def test_any_corrupted_model_bytes_give_an_embedding_output_or_one_refusal(cut, flips):
    data = bytearray(MODEL[:cut] if cut % 3 == 0 else MODEL)
    for pos, byte in flips:
        if pos < len(data):
            data[pos] = byte
    try:
        out, index = with_embedding_output(bytes(data))
    except EmbeddingUnavailable:
        return
    assert len(out) >= len(data) and isinstance(index, int)
