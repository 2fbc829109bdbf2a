"""From a face crop to emotion scores: model loading (LiteRT), the pipeline, labels, smoothing, affect.

May import core.frames and core.faces; must not import core.hue, core.viewer or core.hri.
"""
