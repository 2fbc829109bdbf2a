"""The network's embedding as a second output (core/emotion/embedding.py, issue 26): the probabilities stay
exactly what the shipped file gives, the embedding is the head's input (checked against LiteRT's reference
kernels reading the intermediate tensor), a model without one head says so, and bytes that are not a model
never raise anything but EmbeddingUnavailable."""
from __future__ import annotations

import numpy as np
import pytest

from emotion_ros.core.emotion.embedding import EmbeddingUnavailable, find_embedding, with_embedding_output
from emotion_ros.core.emotion.model import EmotionModel, default_model_path, quantize_input

MODELS = default_model_path().parent
SINGLE = {'emotion': 256, 'emotion_fast': 256, 'emotion_small': 160, 'emotion_small.float32': 160}


def faces(n=40, seed=0):
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 255, 48)[None, :, None]
    return np.clip(rng.normal(0, 40, (n, 48, 48)) + ramp * rng.uniform(0.2, 1.0, (n, 1, 1)), 0, 255).astype(np.uint8)


def reference_embedding(path, x):
    """The head's input tensor read with LiteRT's reference kernels and every tensor preserved."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    data = path.read_bytes()
    emb_id = find_embedding(data)[3]
    it = Interpreter(model_content=data, experimental_preserve_all_tensors=True,
                     experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    inp = it.get_input_details()[0]
    it.resize_tensor_input(inp['index'], (len(x), 48, 48, 1))
    it.allocate_tensors()
    it.set_tensor(inp['index'], quantize_input(x[..., None], inp))
    it.invoke()
    t = next(d for d in it.get_tensor_details() if d['index'] == emb_id)
    raw = it.get_tensor(emb_id).astype(np.float64)
    scale, zero = t['quantization']
    return raw if t['dtype'] == np.float32 else (raw - zero) * scale, scale


@pytest.mark.parametrize('name', list(SINGLE))
def test_probabilities_are_unchanged_and_the_embedding_is_the_heads_input(name):
    path = MODELS / f'{name}.tflite'
    x = faces()
    plain = EmotionModel(path, num_threads=1, embedding=False)
    model = EmotionModel(path, num_threads=1)
    assert plain.embedding_dim == 0 and model.embedding_dim == SINGLE[name], model.embedding_note
    probs, emb = model.predict_with_embedding(x)
    np.testing.assert_array_equal(probs, plain.predict(x))
    np.testing.assert_array_equal(model.predict(x), probs)
    ref, scale = reference_embedding(path, x)
    assert emb.shape == (len(x), SINGLE[name]) and emb.dtype == np.float32
    # int8: XNNPACK's kernels round apart from the reference ones (measured: under 1 step on average, up to 11);
    # float32: the same numbers
    diff = np.abs(emb - ref)
    if scale == 0:
        assert diff.max() <= 1e-4
    else:
        assert diff.mean() <= 1.5 * scale and diff.max() <= 20 * scale
    cos = np.sum(emb * ref, 1) / (np.linalg.norm(emb, axis=1) * np.linalg.norm(ref, axis=1))
    assert cos.min() > 0.998
    big = np.concatenate([x] * 3)    # across the max_batch split
    small = EmotionModel(path, num_threads=1, max_batch=16)
    np.testing.assert_allclose(small.predict_with_embedding(big)[1], np.concatenate([emb] * 3), atol=1e-6)
    assert [a.shape for a in model.predict_with_embedding(np.zeros((0, 48, 48), np.uint8))] == \
        [(0, model.num_classes), (0, SINGLE[name])]


def test_the_ensemble_has_no_single_embedding_and_says_so():
    model = EmotionModel(MODELS / 'emotion_accurate.tflite', num_threads=1)
    assert model.embedding_dim == 0 and 'ensemble' in model.embedding_note
    with pytest.raises(ValueError, match='exposes no embedding'):
        model.predict_with_embedding(faces(2))
    assert np.isfinite(model.predict(faces(2))).all()


@pytest.mark.parametrize('data', [b'', b'\0' * 16, b'TFL3' * 3, bytes(range(256)) * 8,
                                  np.random.default_rng(3).bytes(4096)])
def test_bytes_that_are_not_a_model_are_refused_with_one_exception(data):
    with pytest.raises(EmbeddingUnavailable):
        with_embedding_output(data)


def test_a_truncated_model_is_refused_or_exposes_the_same_tensor():
    data = (MODELS / 'emotion.tflite').read_bytes()
    expected = find_embedding(data)[3]
    for cut in (8, 64, 1000, len(data) // 2):
        try:
            assert find_embedding(data[:cut])[3] == expected
        except EmbeddingUnavailable:
            pass
