"""emotion-train soup: the averaged network holds the mean of its members' weights, its BatchNormalization
statistics are the measured moments on training images, and members of another architecture are refused."""
import numpy as np
import pytest

from emotion_ros.training.cli import main
from test_training import CLASSES, write_synthetic_npz


def _save(model, path):
    model.save(path)
    path.with_name(path.stem + '.labels.txt').write_text('\n'.join(CLASSES) + '\n')
    return path


def test_soup_averages_members_and_measures_batchnorm(tmp_path):
    import keras
    from keras import layers

    from emotion_ros.training.models import build_model
    keras.utils.set_random_seed(1)
    a, b = build_model('emonet', 7, width=8), build_model('emonet', 7, width=8)
    pa, pb = _save(a, tmp_path / 'a.keras'), _save(b, tmp_path / 'b.keras')
    data = write_synthetic_npz(tmp_path / 'syn.npz')
    assert main(['soup', '--model', str(pa), '--model', str(pb), '--out', str(tmp_path / 's.keras'),
                 '--data', str(data), '--calib', '100000', '--holdout', '0']) == 0
    soup = keras.models.load_model(tmp_path / 's.keras')
    conv = [i for i, layer in enumerate(soup.layers) if isinstance(layer, layers.Conv2D)][0]
    np.testing.assert_allclose(soup.layers[conv].kernel.numpy(),
                               (a.layers[conv].kernel.numpy() + b.layers[conv].kernel.numpy()) / 2, rtol=1e-6)
    bn = next(layer for layer in soup.layers if isinstance(layer, layers.BatchNormalization))
    from emotion_ros.training.data import load_npz
    ds = load_npz(data)
    x = ds.images[ds.split == 'train'][..., None].astype(np.float32)
    acts = keras.Model(soup.inputs, bn.input).predict(x, verbose=0)
    np.testing.assert_allclose(bn.moving_mean.numpy(), acts.reshape(-1, acts.shape[-1]).mean(0), rtol=1e-3, atol=1e-3)
    assert np.abs(bn.moving_mean.numpy()).max() > 0.01      # measured, not the members' initial zeros averaged
    assert (tmp_path / 's.labels.txt').read_text().split() == CLASSES
    other = _save(build_model('emonet', 7, width=16), tmp_path / 'c.keras')
    with pytest.raises(SystemExit, match='architectures'):
        main(['soup', '--model', str(pa), '--model', str(other), '--out', str(tmp_path / 'bad.keras')])
