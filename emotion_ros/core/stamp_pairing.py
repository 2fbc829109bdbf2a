"""Pair each image with the face list computed from it, by header stamp (a small message_filters stand-in).

Faces arrive after their image (detection takes time) or, across processes, occasionally before it.
Both sides are cached, bounded; whichever arrives second completes the pair. Faces arrive in stamp
order, so a completed pair evicts every older image: its faces were dropped upstream and never come.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Hashable, Optional, Tuple


class StampPairer:
    def __init__(self, max_images: int = 10, max_faces: int = 10):
        self._images: 'OrderedDict[Hashable, Any]' = OrderedDict()
        self._faces: 'OrderedDict[Hashable, Any]' = OrderedDict()
        self._max_images, self._max_faces = max_images, max_faces
        self.dropped_images = 0
        self.dropped_faces = 0

    def add_image(self, key: Hashable, image: Any) -> Optional[Tuple[Any, Any]]:
        faces = self._faces.pop(key, None)
        if faces is not None:
            self._evict_older(key)
            return image, faces
        self._images[key] = image
        while len(self._images) > self._max_images:
            self._images.popitem(last=False)
            self.dropped_images += 1
        return None

    def add_faces(self, key: Hashable, faces: Any) -> Optional[Tuple[Any, Any]]:
        image = self._images.pop(key, None)
        if image is not None:
            self._evict_older(key)
            return image, faces
        self._faces[key] = faces
        while len(self._faces) > self._max_faces:
            self._faces.popitem(last=False)
            self.dropped_faces += 1
        return None

    def set_capacity(self, max_images: int, max_faces: int) -> None:
        """Change the bounds at runtime; entries beyond a smaller bound are dropped, oldest first."""
        self._max_images, self._max_faces = int(max_images), int(max_faces)
        for cache, bound, attr in ((self._images, self._max_images, 'dropped_images'),
                                   (self._faces, self._max_faces, 'dropped_faces')):
            while len(cache) > bound:
                cache.popitem(last=False)
                setattr(self, attr, getattr(self, attr) + 1)

    def image(self, key: Hashable) -> Optional[Any]:
        return self._images.get(key)

    def _evict_older(self, key: Hashable) -> None:
        for cache, attr in ((self._images, 'dropped_images'), (self._faces, 'dropped_faces')):
            for old in [k for k in cache if k < key]:
                del cache[old]
                setattr(self, attr, getattr(self, attr) + 1)

    def __len__(self) -> int:
        return len(self._images) + len(self._faces)
