"""Start training from an exported float32 .tflite (`fit --init-from`): the weights live on in the shipped
file when the run folder that made them is gone (run folders are not committed).

The converter folded each BatchNormalization into its convolution (kernel scaled, bias added). The Keras
network gets the folded kernels back, and each BatchNormalization is set so that it reproduces "+ bias" both
at inference and in training mode: its moving statistics and its gamma/beta are the measured per-channel
mean and spread of that convolution's output on a calibration batch (layer by layer, in graph order).
"""
from __future__ import annotations

import numpy as np


def _dequantized(it, index) -> np.ndarray:
    """A constant tensor as float32: int8 weights and int32 biases of a full-integer export times their
    (per-channel) scales, so an int8-only shipped model (e.g. `emotion_fast`) can seed a run too; the
    rounding it leaves (< 0.5 % of each channel's range) is trained away in the first epoch."""
    t = it.get_tensor(index)
    if t.dtype == np.float32:
        return t
    q = next(d for d in it.get_tensor_details() if d['index'] == index)['quantization_parameters']
    scales, zeros, axis = q['scales'], q['zero_points'], q['quantized_dimension']
    if not len(scales):
        raise SystemExit(f'tensor {index} is {t.dtype} without quantization scales: not a weight this can read')
    shape = [1] * t.ndim
    if len(scales) > 1:
        shape[axis] = len(scales)
    return ((t.astype(np.float32) - zeros.reshape(shape)) * scales.reshape(shape)).astype(np.float32)


def _tflite_layers(path):
    """[(kernel HWIO, bias)] for every CONV_2D in graph order, and (weights, bias) of the FULLY_CONNECTED."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # pragma: no cover - TensorFlow's copy
        from tensorflow.lite import Interpreter
    it = Interpreter(model_path=str(path))
    it.allocate_tensors()
    convs, dense = [], None
    for op in it._get_ops_details():
        if op['op_name'] not in ('CONV_2D', 'FULLY_CONNECTED'):
            continue
        w = _dequantized(it, op['inputs'][1])
        b = (_dequantized(it, op['inputs'][2]) if len(op['inputs']) > 2 and op['inputs'][2] >= 0
             else np.zeros(len(w), np.float32))
        if op['op_name'] == 'CONV_2D':
            convs.append((np.transpose(w, (1, 2, 3, 0)), b))
        else:
            dense = (w.T, b)
    return convs, dense


def init_from_tflite(model, path, calib_images: np.ndarray) -> None:
    """Load a float32 export of the same architecture into `model` (conv -> BatchNormalization pairs)."""
    import keras
    from keras import layers
    convs, dense = _tflite_layers(path)
    kconvs = [layer for layer in model.layers if isinstance(layer, layers.Conv2D)]
    kdense = [layer for layer in model.layers if isinstance(layer, layers.Dense)]
    if len(kconvs) != len(convs) or len(kdense) != 1 or dense is None:
        raise SystemExit(f'--init-from {path}: {len(convs)} convolutions there, {len(kconvs)} here: not this architecture')
    x = calib_images[..., None].astype(np.float32) if calib_images.ndim == 3 else calib_images.astype(np.float32)
    unused = list(convs)
    for conv in kconvs:  # Keras lists branches in another order than the converter: match by kernel shape, in order
        match = next((c for c in unused if c[0].shape == tuple(conv.kernel.shape)), None)
        bn = conv._outbound_nodes[0].operation if len(conv._outbound_nodes) == 1 else None
        if match is None or not isinstance(bn, layers.BatchNormalization):
            raise SystemExit(f'--init-from {path}: nothing there fits {conv.name} {tuple(conv.kernel.shape)}')
        unused = [c for c in unused if c is not match]
        kernel, bias = match
        conv.kernel.assign(kernel)
        out = keras.Model(model.inputs, conv.output).predict(x, batch_size=256, verbose=0)
        mean = out.reshape(-1, out.shape[-1]).mean(0)
        std = np.maximum(out.reshape(-1, out.shape[-1]).std(0), 1e-3)
        bn.gamma.assign(std)
        bn.beta.assign(mean + bias)
        bn.moving_mean.assign(mean)
        bn.moving_variance.assign(np.maximum(std ** 2 - bn.epsilon, 1e-6))
    kdense[0].kernel.assign(dense[0])
    kdense[0].bias.assign(dense[1])
