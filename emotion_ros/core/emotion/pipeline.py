"""The one classification pipeline: face boxes on an image -> crops -> one batched model call ->
per-track smoothing -> expression, confidence, valence/arousal per face. ROS-free.

The classifier node, `emotion-train evaluate` and bench/ all call it, so what is measured is what the
node runs. Every face that is left out is reported in `FrameResult.problems` with a key the caller
can log or count (`bad_box`, `too_many`, `model_nan`, `duplicate_id`); nothing raises for bad boxes.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from emotion_ros.core.emotion.affect import valence_arousal
from emotion_ros.core.emotion.model import scored_rows
from emotion_ros.core.faces.crop import DEFAULT_MARGIN, clip_box, crop_face
from emotion_ros.core.emotion.smoothing import ScoreSmoother


@dataclass
class FaceEmotion:
    index: int              # position of the face in the caller's list
    box: tuple              # (x, y, w, h) clipped to the image
    track_id: str
    expression: str
    confidence: float
    valence: float
    arousal: float
    scores: np.ndarray      # smoothed probabilities in `labels` order


@dataclass
class FrameResult:
    faces: list = field(default_factory=list)       # FaceEmotion, in the caller's order
    problems: list = field(default_factory=list)    # (key, message)


class EmotionPipeline:
    """Crop -> batch predict -> smoothing -> valence/arousal, for one stream of frames.

    `model` is anything with `labels` and `predict(uint8 N x 48 x 48) -> N x C` (EmotionModel);
    `smoother` keeps per-track state between frames (None = no smoothing); `calibration`
    (emotion_ros.core.emotion.calibration.Calibration, None = none) maps the model's scores before
    smoothing, so every consumer of the result sees calibrated scores.
    """

    def __init__(self, model, smoother: ScoreSmoother | None = None, max_faces: int = 32, calibration=None):
        self.model = model
        self.labels = list(model.labels)
        self.smoother = smoother
        self.max_faces = int(max_faces)
        self.calibration = calibration

    def predict_crops(self, crops) -> np.ndarray:
        """Probabilities for ready 48x48 uint8 crops (one batched call); unusable rows are all-NaN."""
        crops = np.asarray(crops)
        if len(crops) == 0:
            return np.zeros((0, len(self.labels)), np.float32)
        calibration = self.calibration   # read once: a runtime swap lands between frames
        if calibration is None:
            return self.model.predict(crops)
        if calibration.needs_embedding:
            return calibration.apply(*self.model.predict_with_embedding(crops))
        return calibration.apply(self.model.predict(crops))

    def process(self, image: np.ndarray, boxes, track_ids=None, t: float = float('nan'),
                margin: float = DEFAULT_MARGIN, display=str) -> FrameResult:
        """Classify the faces `boxes` ((x, y, w, h) each) of one BGR or gray image taken at time `t`.

        `display` turns a track id into text for the problem messages (e.g. one that neutralises
        control characters in ids that came from the network).
        """
        result = FrameResult()
        n = len(boxes)
        track_ids = list(track_ids) if track_ids is not None else [''] * n

        def name(i):
            return display(track_ids[i]) or str(i)
        height, width = image.shape[:2]
        kept, clipped = [], []   # boxes clipped to the image before anything else looks at them
        for i, box in enumerate(boxes):
            try:
                clipped.append(clip_box(tuple(box), width, height))
                kept.append(i)
            except ValueError as exc:
                result.problems.append(('bad_box', f'face {name(i)} skipped: {exc}'))
        order = sorted(range(len(kept)), key=lambda k: -clipped[k][2] * clipped[k][3])
        chosen = sorted(order[:self.max_faces])
        if len(kept) > len(chosen):
            result.problems.append(('too_many', f'{len(kept)} faces in one frame; classifying the largest '
                                                f'{len(chosen)} (max_faces)'))
        crops, valid = [], []
        for k in chosen:
            i = kept[k]
            try:
                crops.append(crop_face(image, tuple(boxes[i]), margin=margin))
                valid.append(k)
            except ValueError as exc:
                result.problems.append(('bad_box', f'face {name(i)} skipped: {exc}'))
        probs = self.predict_crops(np.stack(crops) if crops else [])
        scored = scored_rows(probs)
        if not scored.all():
            result.problems.append(('model_nan', f'the model gave non-finite scores for {int((~scored).sum())} '
                                                 f'of {len(scored)} faces; those faces are left out of this frame'))
        valid = [k for k, ok in zip(valid, scored) if ok]
        ids = [track_ids[kept[k]] for k in valid]
        if self.smoother is not None:
            smoothed, repeated = self.smoother.update_frame(ids, probs[scored], t)
            if repeated:
                result.problems.append(('duplicate_id', f'{len(repeated)} face ids occur more than once in one '
                                                        f'frame (first: {display(repeated[0])}); each face is smoothed '
                                                        'on its own'))
            self.smoother.forget_older_than(t)
        else:
            smoothed = probs[scored]
        if not valid:
            return result
        # The whole frame at once (one argmax, one valence/arousal product): per face these numpy calls cost
        # more than the crops (5 faces: 0.5 ms of 1.0 ms outside inference, issue 13).
        scores = np.asarray(smoothed, np.float32).reshape(len(valid), len(self.labels))
        top = scores.argmax(axis=1)
        confidence = scores[np.arange(len(valid)), top].tolist()
        valence, arousal = (va.tolist() for va in valence_arousal(self.labels, scores))
        for j, k in enumerate(valid):
            i = kept[k]
            result.faces.append(FaceEmotion(index=i, box=clipped[k], track_id=track_ids[i],
                                            expression=self.labels[top[j]], confidence=confidence[j],
                                            valence=valence[j], arousal=arousal[j], scores=scores[j]))
        return result
