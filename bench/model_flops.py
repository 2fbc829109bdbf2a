"""Floating-point operations per face of a model, counted from its layers (multiply-add = 2 FLOPs).

Only convolutions and dense layers are counted (they are >95 % of the work in these networks); the
figure turns a measured rate into GFLOP/s, which shows whether a model is compute-bound on this CPU.
Multiply-adds (MACs) are half the FLOPs: the default model's budget (issue 14: <= 40 M per face) is
counted in those. `python bench/model_flops.py MODEL.tflite|MODEL.keras ...` prints both.
"""
from __future__ import annotations

import numpy as np


def tflite_mflops(path) -> float:
    from ai_edge_litert.interpreter import Interpreter
    interp = Interpreter(model_path=str(path))
    interp.allocate_tensors()
    shapes = {t['index']: tuple(int(s) for s in t['shape']) for t in interp.get_tensor_details()}
    total = 0
    for op in interp._get_ops_details():
        name = op['op_name']
        if name not in ('CONV_2D', 'DEPTHWISE_CONV_2D', 'FULLY_CONNECTED'):
            continue
        out, w = shapes[op['outputs'][0]], shapes[op['inputs'][1]]
        if name == 'CONV_2D':
            total += 2 * int(np.prod(out[1:])) * w[1] * w[2] * w[3]
        elif name == 'DEPTHWISE_CONV_2D':
            total += 2 * int(np.prod(out[1:])) * w[1] * w[2]
        else:
            total += 2 * w[0] * w[1]
    return total / 1e6


def tflite_mmacs(path) -> float:
    """Millions of multiply-adds per face (one input image) of a .tflite model."""
    return tflite_mflops(path) / 2


def keras_mflops(model) -> float:
    total = 0
    for layer in _leaf_layers(model):
        kind = layer.__class__.__name__
        if kind not in ('Conv2D', 'DepthwiseConv2D', 'SeparableConv2D', 'Dense'):
            continue
        out = tuple(int(s) for s in layer.output.shape[1:])
        cin = int(layer.input.shape[-1])
        if kind == 'Dense':
            total += 2 * cin * out[-1]
            continue
        kh, kw = layer.kernel_size
        spatial = out[0] * out[1]
        if kind == 'Conv2D':
            total += 2 * spatial * out[2] * kh * kw * cin // getattr(layer, 'groups', 1)
        elif kind == 'DepthwiseConv2D':
            total += 2 * spatial * out[2] * kh * kw
        else:
            mult = getattr(layer, 'depth_multiplier', 1)
            total += 2 * spatial * cin * mult * kh * kw + 2 * spatial * cin * mult * out[2]
    return total / 1e6


def _leaf_layers(model):
    for layer in model.layers:
        if hasattr(layer, 'layers') and layer.layers:
            yield from _leaf_layers(layer)
        else:
            yield layer


def main(argv=None) -> int:
    import argparse
    import json
    parser = argparse.ArgumentParser(description='multiply-adds per face of .tflite / .keras models')
    parser.add_argument('models', nargs='+')
    parser.add_argument('--max-mmacs', type=float, default=0, help='exit 1 if a model exceeds this (M MACs)')
    args = parser.parse_args(argv)
    worst = 0.0
    for path in args.models:
        if str(path).endswith('.keras'):
            import keras
            mflops = keras_mflops(keras.models.load_model(path, compile=False))
        else:
            mflops = tflite_mflops(path)
        worst = max(worst, mflops / 2)
        print(json.dumps({'model': str(path), 'mflops_per_face': round(mflops, 2), 'mmacs_per_face': round(mflops / 2, 2)}))
    return 1 if args.max_mmacs and worst > args.max_mmacs else 0


if __name__ == '__main__':
    raise SystemExit(main())
