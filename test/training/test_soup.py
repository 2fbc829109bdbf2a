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


@pytest.mark.slow
def test_fit_keeps_every_epoch_for_a_trajectory_soup(tmp_path):
    """--keep-epochs leaves one float32 .keras per epoch with its labels; soup over them averages the trajectory."""
    import keras
    data = write_synthetic_npz(tmp_path / 'syn.npz')
    run = tmp_path / 'run'
    assert main(['fit', '--data', str(data), '--run-dir', str(run), '--arch', 'emonet', '--width', '8',
                 '--epochs', '2', '--batch-size', '32', '--lr', '3e-3', '--seed', '3', '--keep-epochs']) == 0
    kept = sorted((run / 'epochs').glob('epoch_*.keras'))
    assert [p.name for p in kept] == ['epoch_001.keras', 'epoch_002.keras']
    assert (run / 'epochs' / 'labels.txt').read_text().split() == CLASSES
    first, second = (keras.models.load_model(p) for p in kept)
    last = keras.models.load_model(run / 'checkpoints' / 'last.keras')
    for a, b in zip(second.get_weights(), last.get_weights()):
        np.testing.assert_array_equal(a, b)                  # epoch 2 is the state training ended in
    assert any(not np.array_equal(a, b) for a, b in zip(first.get_weights(), second.get_weights()))
    assert main(['soup', '--model', str(kept[0]), '--model', str(kept[1]), '--out', str(tmp_path / 's.keras')]) == 0
    soup = keras.models.load_model(tmp_path / 's.keras')
    for s, a, b in zip(soup.get_weights(), first.get_weights(), second.get_weights()):
        np.testing.assert_allclose(s, (a + b) / 2, rtol=1e-6, atol=1e-7)
