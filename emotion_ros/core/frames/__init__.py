"""Frames in: camera/file/HTTP sources, pacing, image encodings and header checks, frame buffers, GIF clips.

Owns pixels before any face is found; imports nothing from the other core packages but core's helpers.
"""
