"""Floating-point operations per face of a model, counted from its layers (multiply-add = 2 FLOPs).

Only convolutions and dense layers are counted (they are >95 % of the work in these networks); the
figure turns a measured rate into GFLOP/s, which shows whether a model is compute-bound on this CPU.
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
