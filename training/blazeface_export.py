"""MediaPipe's full-range BlazeFace rebuilt as the detector's 'full_sparse_fast' model:
`python -m training.blazeface_export` writes emotion_ros/models/face_detection_full_range_sparse_fast.tflite.

MediaPipe ships the network fixed at a 192x192 RGB float input, with float16 weights (the sparse one
through DENSIFY). Here the graph is rebuilt op by op as a TensorFlow function (weights read back from an
interpreter after one invoke, so DEQUANTIZE/DENSIFY come out as dense constants; op options from the
flatbuffer) and converted again with float16 weights (the originals' own, so lossless), changed so that:
- the input is 192x144: a 640x480 frame fills it, no longer padded to 192x192 (25 % less work). 144 is
  not a multiple of the net's stride 32, so where a 2x-upsampled deep map meets its skip connection it
  has one row more (10 against 9), and that row, which only the padding fed, is dropped. (192x160, the
  next multiple of 32, kept 43/43 at 0.6 too but cost 9 % more; 144 keeps 43/43 at 0.5, 42/43 at 0.6.)
- it takes BGR uint8 pixels: the channel swap is folded into the first convolution's weights and the
  scaling into the graph, so the detector resizes the frame straight into the input tensor;
- it regresses only the 4 box values, not the 6 keypoints the detector never used (-2.5 % CPU time).
The same graph at 192x192 must reproduce the original on real frames (max |diff| <= FLOAT_MAX_ABS_DIFF)
or nothing is written.

`--int8 PATH` also writes a full-integer int8 export (per-channel weights, uint8 in, float32 out,
calibrated on frames of the ../shared/media clips). It is not shipped: on the VNNI Xeon it ran no faster
than float32 (the 96x96 stage, ~40 % of the time, is memory-bound and was slower in int8) and found
25 of facedet_small's 43 faces against 43 (logits off by up to 9 near the threshold, even with
the logits' range clamped for a fine scale). Needs TensorFlow (training only, not on the robot).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / 'shared'
CALIBRATION_CLIPS = ('face-demographics-walking-and-pause.mp4', 'head-pose-face-detection-male.mp4',
                     'classroom.mp4')
FLOAT_MAX_ABS_DIFF = 1e-2       # rebuilt float graph vs the original (logits and pixel offsets)
SOURCE, EXPORTED_AS = 'full_sparse', 'full_sparse_fast'
INT8_LOGIT_RANGE = 16.0         # scores 1e-7..1-1e-7: min_score's whole useful range
_ACTIVATIONS = {0: None, 1: 'relu', 3: 'relu6'}


def _op_name(model, op) -> str:
    from tensorflow.lite.python import schema_py_generated as schema
    names = {getattr(schema.BuiltinOperator, k): k for k in dir(schema.BuiltinOperator) if not k.startswith('_')}
    code = model.operatorCodes[op.opcodeIndex]
    return names[max(code.builtinCode, code.deprecatedBuiltinCode)]


def _activate(tf, x, code: int):
    if code not in _ACTIVATIONS:
        raise NotImplementedError(f'fused activation {code}')
    kind = _ACTIVATIONS[code]
    return x if kind is None else tf.nn.relu(x) if kind == 'relu' else tf.nn.relu6(x)


def _padding(code: int) -> str:
    return {0: 'SAME', 1: 'VALID'}[code]


def rebuild(model_path, outputs=None, input_hw=None, bgr: bool = False, pixels: bool = False,
            logit_range: float = 0.0, boxes_only: bool = False):
    """(tf function of one (1, H, W, 3) input -> the original's outputs in order, their names).

    By default the input is the original's: float32 RGB scaled to -1..1. `bgr` folds the channel swap
    into the first convolution's weights (the detector then copies OpenCV's BGR frame as it is);
    `pixels` takes uint8 pixels and scales them in the graph (two cheap elementwise ops instead of a
    strided numpy pass per frame). `input_hw` sets another input size, None for any: upsamplings keep
    their factor, each side must be a multiple of the net's deepest stride. `outputs` (tensor indices)
    cuts the graph there, to time its parts. `logit_range` R > 0 clamps the score logits to -R..R at
    the (depthwise) convolution that makes them, as a fused RELU6 on (logit + R) * 6 / 2R, undone after the reshape:
    for int8, whose one scale per tensor would otherwise span the background's logits down to ~-400
    (a 1.7 step: scores 0.5 and 0.85 one step apart); R = 16 gives a 0.13 step. `boxes_only` keeps the
    4 box columns of the 16 regressors (the 6 keypoints are not used): the channels they come from are
    traced back through RESHAPE, DEPTH_TO_SPACE, the depthwise and the 1x1 convolution, whose weights are
    cut to them (a quarter of that branch's work).

    Constant tensors (weights, and what DEQUANTIZE/DENSIFY make of them) are read from an interpreter
    that kept all intermediates; every other op is mapped to the TensorFlow op with the options stored
    in the flatbuffer (stride, padding, fused activation, resize centres), not guessed from shapes."""
    import tensorflow as tf
    from tensorflow.lite.python import schema_py_generated as schema

    buf = Path(model_path).read_bytes()
    model = schema.ModelT.InitFromPackedBuf(buf, 0)
    graph = model.subgraphs[0]
    # without XNNPACK, which would take DEQUANTIZE/DENSIFY over and leave their outputs unset
    interpreter = tf.lite.Interpreter(
        model_content=buf, experimental_preserve_all_tensors=True,
        experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter.allocate_tensors()
    (input_index,) = graph.inputs
    interpreter.set_tensor(input_index, np.zeros(graph.tensors[input_index].shape, np.float32))
    interpreter.invoke()
    constant_makers = {'DEQUANTIZE', 'DENSIFY'}
    constants = {}
    for i, tensor in enumerate(graph.tensors):
        if i != input_index and model.buffers[tensor.buffer].data is not None:
            constants[i] = np.array(interpreter.get_tensor(i))
    for op in graph.operators:
        if _op_name(model, op) in constant_makers:
            constants[op.outputs[0]] = np.array(interpreter.get_tensor(op.outputs[0]), dtype=np.float32)
    ops = [(op, _op_name(model, op)) for op in graph.operators]
    ops = [(op, name) for op, name in ops if name not in constant_makers]
    outputs = list(graph.outputs if outputs is None else outputs)
    producer = {op.outputs[0]: (op, name) for op, name in ops}
    logits = logit_conv = next((i for i in graph.outputs if graph.tensors[i].shape[-1] == 1), None)
    while logit_range and logit_conv in producer and producer[logit_conv][1] in ('RESHAPE', 'DEPTH_TO_SPACE'):
        logit_conv = producer[logit_conv][0].inputs[0]
    if logit_range and (logit_conv not in producer or producer[logit_conv][1] not in ('CONV_2D', 'DEPTHWISE_CONV_2D')
                        or producer[logit_conv][0].builtinOptions.fusedActivationFunction):
        raise NotImplementedError(f'{model_path}: the logits do not come from a plain convolution')
    select = _box_channels(graph, producer, ops) if boxes_only else {}

    def forward(x):
        if pixels:
            x = tf.cast(x, tf.float32) * np.float32(2 / 255) - 1.0
        values = {input_index: x}
        image_like = {input_index}              # the input and its zero-padded copies: channels in input order

        def get(i):
            return values[i] if i in values else tf.constant(constants[i])

        for op, name in ops:
            o = op.builtinOptions
            ins = [i for i in op.inputs if i >= 0]
            keep = select.get(op.outputs[0], slice(None))
            if name == 'CONV_2D':
                kernel = np.transpose(constants[ins[1]], (1, 2, 3, 0))[..., keep]  # OHWI -> HWIO
                if bgr and ins[0] in image_like:
                    kernel = kernel[:, :, ::-1, :].copy()
                y = tf.nn.conv2d(get(ins[0]), kernel, strides=[1, o.strideH, o.strideW, 1],
                                 padding=_padding(o.padding), dilations=[1, o.dilationHFactor, o.dilationWFactor, 1])
                y = _activate(tf, tf.nn.bias_add(y, constants[ins[2]][keep]), o.fusedActivationFunction)
            elif name == 'DEPTHWISE_CONV_2D':
                if bgr and ins[0] in image_like:
                    raise NotImplementedError('bgr: the input feeds a depthwise convolution')
                w = constants[ins[1]]                                              # 1, H, W, C * multiplier
                kernel = w.reshape(w.shape[1], w.shape[2], -1, o.depthMultiplier)[:, :, keep]
                y = tf.nn.depthwise_conv2d(get(ins[0]), kernel, strides=[1, o.strideH, o.strideW, 1],
                                           padding=_padding(o.padding),
                                           dilations=[o.dilationHFactor, o.dilationWFactor])
                y = _activate(tf, tf.nn.bias_add(y, constants[ins[2]][keep]), o.fusedActivationFunction)
            elif name == 'ADD':
                a, b = get(ins[0]), get(ins[1])
                if a.shape.rank == 4 and None not in a.shape and a.shape != b.shape:
                    # a side that is not a multiple of 32: the 2x upsampled deeper map has one row more
                    # than the skip connection (5 -> 10 against 9); its extra last row is dropped
                    rows, cols = min(a.shape[1], b.shape[1]), min(a.shape[2], b.shape[2])
                    a, b = a[:, :rows, :cols], b[:, :rows, :cols]
                y = _activate(tf, a + b, o.fusedActivationFunction)
            elif name == 'PAD':
                y = tf.pad(get(ins[0]), constants[ins[1]])
                if ins[0] in image_like:
                    image_like.add(op.outputs[0])
            elif name == 'MAX_POOL_2D':
                y = tf.nn.max_pool2d(get(ins[0]), [o.filterHeight, o.filterWidth], [o.strideH, o.strideW],
                                     _padding(o.padding))
                y = _activate(tf, y, o.fusedActivationFunction)
            elif name == 'RELU':
                y = tf.nn.relu(get(ins[0]))
            elif name == 'RESIZE_BILINEAR':
                factor = (constants[ins[1]] // np.asarray(graph.tensors[ins[0]].shape[1:3])).astype(np.int32)
                size = tf.shape(get(ins[0]))[1:3] * factor if input_hw and None in input_hw else \
                    (np.asarray(get(ins[0]).shape[1:3].as_list()) * factor).astype(np.int32)
                y = tf.raw_ops.ResizeBilinear(images=get(ins[0]), size=size, align_corners=bool(o.alignCorners),
                                              half_pixel_centers=bool(o.halfPixelCenters))
            elif name == 'DEPTH_TO_SPACE':
                y = tf.nn.depth_to_space(get(ins[0]), o.blockSize)
            elif name == 'RESHAPE':
                shape = np.array(constants[ins[1]] if len(ins) > 1 else o.newShape)
                if op.outputs[0] in select:
                    shape[-1] = len(select[op.outputs[0]])
                y = tf.reshape(get(ins[0]), shape)
            elif name == 'CONCATENATION':
                y = _activate(tf, tf.concat([get(i) for i in ins], axis=o.axis), o.fusedActivationFunction)
            else:
                raise NotImplementedError(f'{model_path}: op {name} is not mapped')
            if logit_range and op.outputs[0] == logit_conv:
                y = tf.nn.relu6((y + logit_range) * np.float32(6 / (2 * logit_range)))
            if logit_range and op.outputs[0] == logits:
                y = y * np.float32(2 * logit_range / 6) - logit_range
            values[op.outputs[0]] = y
        return [values[i] for i in outputs]

    shape = [int(v) for v in graph.tensors[input_index].shape]
    if input_hw is not None:
        shape[1:3] = input_hw
    spec = tf.TensorSpec(shape, tf.uint8 if pixels else tf.float32)
    return tf.function(forward, input_signature=[spec]), [graph.tensors[i].name.decode() for i in outputs]


def _box_channels(graph, producer: dict, ops: list) -> dict:
    """{tensor: channel indices to keep} from the regressor output (its first 4 columns) back to the 1x1
    convolution that makes them; NotImplementedError where the chain is not the one this is written for."""
    consumers = {}
    for op, _ in ops:
        for i in op.inputs:
            consumers[i] = consumers.get(i, 0) + 1
    tensor = next(i for i in graph.outputs if graph.tensors[i].shape[-1] == 16)
    select, channels = {}, list(range(4))
    while True:
        op, name = producer[tensor]
        if name not in ('PAD', 'DEPTH_TO_SPACE', 'RESHAPE', 'DEPTHWISE_CONV_2D', 'CONV_2D') or (
                tensor not in graph.outputs and consumers.get(tensor) != 1):
            raise NotImplementedError(f'boxes_only: the regressors come through {name} (shared or not mapped)')
        if name != 'PAD':
            select[tensor] = np.array(channels)
        if name == 'CONV_2D':
            return select
        if name == 'DEPTH_TO_SPACE':
            block, depth = op.builtinOptions.blockSize, int(graph.tensors[tensor].shape[-1])
            channels = [(dy * block + dx) * depth + c for dy in range(block) for dx in range(block) for c in channels]
        if name == 'DEPTHWISE_CONV_2D' and op.builtinOptions.depthMultiplier != 1:
            raise NotImplementedError('boxes_only: a depthwise convolution with a channel multiplier')
        tensor = op.inputs[0]


def _frames(paths, per_clip: int) -> list:
    import cv2
    frames = []
    for path in paths:
        capture = cv2.VideoCapture(str(path))
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or 1
        for index in np.linspace(0, count - 1, per_clip).astype(int):
            capture.set(cv2.CAP_PROP_POS_FRAMES, int(index))
            ok, frame = capture.read()
            if ok:
                frames.append(cv2.resize(frame, (640, 480), interpolation=cv2.INTER_AREA))
        capture.release()
    return frames


def calibration_frames(per_clip: int = 40, media: Path = SHARED / 'media') -> list:
    """640x480 BGR frames spread over the media clips (people walking, a turning head, a classroom), each
    also mirrored: the camera scenes the detector meets, faces from ~12 px to half the frame."""
    paths = [media / clip for clip in CALIBRATION_CLIPS if (media / clip).is_file()]
    if not paths:
        raise FileNotFoundError(f'no calibration clips in {media} ({", ".join(CALIBRATION_CLIPS)})')
    frames = _frames(paths, per_clip)
    return frames + [frame[:, ::-1].copy() for frame in frames]


def model_inputs(frames: list) -> list:
    """What the original full-range model is fed for these frames by BlazeFaceDetector (its own
    preprocessing): (1, 192, 192, 3) float32 RGB in -1..1, the frame at the top, -1 below."""
    from emotion_ros.core.faces.detection import BlazeFaceDetector
    detector = BlazeFaceDetector(model='full_sparse', min_score=0.99)
    inputs = []
    for frame in frames:
        detector.detect(frame)
        inputs.append(np.array(detector._interpreter.get_tensor(detector._input)))
    return inputs


def as_pixels(x: np.ndarray, rows: int = None) -> np.ndarray:
    """An original-model input as the exports take it: BGR uint8, the first `rows` rows."""
    return np.round((x[:, :rows, :, ::-1] + 1) * 127.5).clip(0, 255).astype(np.uint8)


def outputs_of(content: bytes, x: np.ndarray) -> dict:
    """{16: regressors, 1: logits} of a .tflite (bytes) on one input, resized to it."""
    from ai_edge_litert.interpreter import Interpreter
    interpreter = Interpreter(model_content=content, num_threads=1)
    interpreter.resize_tensor_input(interpreter.get_input_details()[0]['index'], list(x.shape), strict=False)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]['index'], x)
    interpreter.invoke()
    return {int(d['shape'][-1]): np.array(interpreter.get_tensor(d['index'])) for d in interpreter.get_output_details()}


def max_abs_diff(a: bytes, a_inputs: list, b: bytes, b_inputs: list) -> dict:
    """Largest |a - b| per output (16 regressors in input pixels, 1 logit) over paired inputs."""
    worst = {}
    for xa, xb in zip(a_inputs, b_inputs):
        ra, rb = outputs_of(a, xa), outputs_of(b, xb)
        for key in ra:
            worst[key] = max(worst.get(key, 0.0), float(np.max(np.abs(ra[key] - rb[key]))))
    return worst


def candidate_diff(reference: bytes, other: bytes, inputs: list, floor: float = -4.0) -> dict:
    """Where it matters: the largest logit difference over anchors whose reference logit is above
    `floor` (score 0.018; the background's far-negative logits are clamped in the int8 export), and the
    largest box difference (input pixels) over anchors that score >= 0.5 in the reference."""
    logit = box = 0.0
    for x in inputs:
        ra, rb = outputs_of(reference, x), outputs_of(other, x)
        la, lb = ra[1].ravel(), rb[1].ravel()
        near, face = la > floor, la > 0
        if near.any():
            logit = max(logit, float(np.abs(la[near] - lb[near]).max()))
        if face.any():
            box = max(box, float(np.abs(ra[16][0, face, :4] - rb[16][0, face, :4]).max()))
    return {'logit': round(logit, 3), 'box_px': round(box, 2)}


def convert(function, representative=None, int8: bool = False) -> bytes:
    """TFLite flatbuffer of `function`: float32 with float16 weights (the originals' own precision, so
    lossless and half the file), or full-integer int8 calibrated on `representative` with uint8 pixels
    in (the detector writes the frame as it is) and float32 out."""
    import tensorflow as tf
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function.get_concrete_function()])
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if int8:
        converter.representative_dataset = lambda: ([x] for x in representative)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
        converter.inference_output_type = tf.float32
    else:
        converter.target_spec.supported_types = [tf.float16]
    return converter.convert()


def _input_quantisation(content: bytes) -> tuple:
    from ai_edge_litert.interpreter import Interpreter
    return Interpreter(model_content=content).get_input_details()[0]['quantization']


def fast_export(source) -> bytes:
    """The shipped 'full_sparse_fast' model made from MediaPipe's file `source`."""
    from emotion_ros.core.faces.detection import _BLAZEFACE_MODELS
    target = _BLAZEFACE_MODELS[EXPORTED_AS]
    return convert(rebuild(source, input_hw=(target.input_rows, target.input_size), bgr=True, pixels=True,
                           boxes_only=True)[0])


def main(argv=None) -> int:
    from emotion_ros.core.faces.detection import MODEL_DIR, _BLAZEFACE_MODELS
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out', type=Path, help=f'default emotion_ros/models/{_BLAZEFACE_MODELS[EXPORTED_AS].file}')
    parser.add_argument('--int8', type=Path, metavar='PATH', help='also write the int8 export there (not shipped)')
    parser.add_argument('--per-clip', type=int, default=40,
                        help='int8 calibration frames per clip (each also mirrored)')
    args = parser.parse_args(argv)

    target = _BLAZEFACE_MODELS[EXPORTED_AS]
    source = MODEL_DIR / _BLAZEFACE_MODELS[SOURCE].file
    originals = model_inputs(calibration_frames(args.per_clip))
    rows = target.input_rows
    check = originals[::max(1, len(originals) // 24)]
    full_fn, _ = rebuild(source, bgr=True, pixels=True)
    diff = max_abs_diff(source.read_bytes(), check, convert(full_fn), [as_pixels(x) for x in check])
    print(f'rebuilt graph vs {source.name} at 192x192: max |diff| {diff} on {len(check)} frames')
    if max(diff.values()) > FLOAT_MAX_ABS_DIFF:
        print(f'error: the rebuilt graph differs from {source.name} by more than {FLOAT_MAX_ABS_DIFF}', file=sys.stderr)
        return 1
    float32 = fast_export(source)
    out = args.out or MODEL_DIR / target.file
    out.write_bytes(float32)
    print(f'wrote {out} ({len(float32)} bytes)')
    if args.int8:
        int8_fn, _ = rebuild(source, input_hw=(rows, target.input_size), bgr=True, logit_range=INT8_LOGIT_RANGE)
        int8 = convert(int8_fn, [x[:, :rows, :, ::-1].copy() for x in originals], int8=True)
        scale, zero_point = _input_quantisation(int8)
        if abs(scale - 2 / 255) > 1e-6 or zero_point not in (127, 128):
            print(f'error: int8 input quantisation {scale}, {zero_point} is not pixels (2/255, 127|128)',
                  file=sys.stderr)
            return 1
        pixels = [as_pixels(x, rows) for x in check]
        print(f'int8 vs float32 at 192x{rows}: max |diff| {candidate_diff(float32, int8, pixels)} '
              f'(calibrated on {len(originals)} frames)')
        args.int8.write_bytes(int8)
        print(f'wrote {args.int8} ({len(int8)} bytes)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
