"""Faces in frames: detector backends, tracking ids across frames, the classifier's crop, annotation.

May import core.frames (encodings); must not import core.emotion, core.hue or core.viewer.
"""
