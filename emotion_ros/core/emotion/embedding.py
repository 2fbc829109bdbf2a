"""The network's embedding beside its probabilities: the input of the classifier's last layer (the
global-average-pool output of our exports), made a second output of the .tflite in memory.

Why in memory: the shipped files, their sha256 (which calibration files name) and every figure measured with
them stay as they are; XNNPACK hides intermediate tensors, so the embedding must be a graph output to be read at
the served speed. The walk is output <- [DEQUANTIZE] <- SOFTMAX <- FULLY_CONNECTED: a model whose output is not
one such head (the two-network ensemble averages two) has no single embedding, and EmbeddingUnavailable says so.

Only the few flatbuffer fields this needs are read (TFLite schema: Model.subgraphs, SubGraph.outputs/operators,
Operator.opcode_index/inputs/outputs, OperatorCode.builtin_code); no TensorFlow, no schema package.
"""
from __future__ import annotations

import struct

DEQUANTIZE, FULLY_CONNECTED, SOFTMAX = 6, 9, 25   # TFLite BuiltinOperator codes


class EmbeddingUnavailable(ValueError):
    """The model has no single embedding to expose; the message says why."""


class _Flatbuffer:
    def __init__(self, data: bytes):
        self.b = data

    def u32(self, pos):
        return struct.unpack_from('<I', self.b, pos)[0]

    def field(self, table: int, index: int):
        """Position of field `index`'s value in `table`, None when absent (its default)."""
        vtable = table - struct.unpack_from('<i', self.b, table)[0]
        slot = 4 + 2 * index
        if slot >= struct.unpack_from('<H', self.b, vtable)[0]:
            return None
        offset = struct.unpack_from('<H', self.b, vtable + slot)[0]
        return table + offset if offset else None

    def ref(self, pos: int) -> int:
        return pos + self.u32(pos)

    def vector(self, table: int, index: int):
        """(first element position, length) of a vector field; (0, 0) when absent."""
        pos = self.field(table, index)
        if pos is None:
            return 0, 0
        vec = self.ref(pos)
        return vec + 4, self.u32(vec)

    def ints(self, table: int, index: int) -> list:
        start, n = self.vector(table, index)
        return list(struct.unpack_from(f'<{n}i', self.b, start)) if n else []

    def tables(self, table: int, index: int) -> list:
        start, n = self.vector(table, index)
        return [self.ref(start + 4 * i) for i in range(n)]

    def scalar(self, table: int, index: int, fmt: str, default=0):
        pos = self.field(table, index)
        return default if pos is None else struct.unpack_from(fmt, self.b, pos)[0]


def find_embedding(data: bytes) -> tuple:
    """(subgraph position, outputs field position, output tensor ids, embedding tensor id) of a .tflite."""
    fb = _Flatbuffer(data)
    try:
        model = fb.ref(0)
        codes = [max(fb.scalar(c, 0, '<b'), fb.scalar(c, 3, '<i')) for c in fb.tables(model, 1)]
        subgraph = fb.tables(model, 2)[0]
        outputs = fb.ints(subgraph, 2)
        producer = {}
        for op in fb.tables(subgraph, 3):
            for t in fb.ints(op, 2):
                producer[t] = (codes[fb.scalar(op, 0, '<I')], fb.ints(op, 1))
    except (struct.error, IndexError, ValueError, OverflowError) as exc:
        raise EmbeddingUnavailable(f'not a TFLite flatbuffer this reader understands ({exc})') from exc
    if len(outputs) != 1:
        raise EmbeddingUnavailable(f'{len(outputs)} outputs, expected 1')
    code, inputs = producer.get(outputs[0], (None, []))
    if code == DEQUANTIZE:
        code, inputs = producer.get(inputs[0], (None, []))
    if code != SOFTMAX:
        raise EmbeddingUnavailable('the output is not one softmax (an ensemble has no single embedding)')
    code, inputs = producer.get(inputs[0], (None, []))
    if code != FULLY_CONNECTED:
        raise EmbeddingUnavailable('the softmax does not follow a fully connected layer')
    return subgraph, fb.field(subgraph, 2), outputs, inputs[0]


def with_embedding_output(data: bytes) -> tuple:
    """(model bytes with the embedding as second output, embedding tensor id). The original outputs vector is
    left in place; a new one is appended and the SubGraph's offset pointed at it (offsets point forwards)."""
    _, field_pos, outputs, embedding = find_embedding(data)
    out = bytearray(data)
    out += b'\0' * (-len(out) % 4)
    vector_pos = len(out)
    out += struct.pack(f'<I{len(outputs) + 1}i', len(outputs) + 1, *outputs, embedding)
    struct.pack_into('<I', out, field_pos, vector_pos - field_pos)
    return bytes(out), embedding
