"""Dataset I/O on disk: the FaceLabeler folder layout (atomic, append-safe writes).

May import core.emotion.labels; nothing else in core.
"""
