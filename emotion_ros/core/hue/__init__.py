"""Philips Hue: which light state a mood asks for (colors, policy), reaching the bridge (connection), following
the mood (controller), parameters, credentials.

The wire protocols are in hue.bridge; may import core.emotion.labels; must not import vision or viewer code.
"""
