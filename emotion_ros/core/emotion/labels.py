"""Emotion class names: the shipped model's canonical list and a synonym map onto it.

Datasets and tools spell the same class differently (FER+ says 'happiness', FaceLabeler folders say
'Happy', some say 'scared'); everything in the project compares labels only after `canonical_label`.
"""

# Order of the shipped model's outputs (FER2013's original codes 0..6).
CANONICAL_LABELS = ('angry', 'disgust', 'fear', 'happy', 'sad', 'surprise', 'neutral')

EXTRA_LABELS = ('contempt',)

_SYNONYMS = {
    'anger': 'angry', 'mad': 'angry', 'angry': 'angry',
    'disgust': 'disgust', 'disgusted': 'disgust', 'disgusting': 'disgust',
    'fear': 'fear', 'fearful': 'fear', 'scared': 'fear', 'afraid': 'fear',
    'happy': 'happy', 'happiness': 'happy', 'joy': 'happy', 'smile': 'happy', 'smiling': 'happy',
    'sad': 'sad', 'sadness': 'sad', 'unhappy': 'sad',
    'surprise': 'surprise', 'surprised': 'surprise',
    'neutral': 'neutral', 'calm': 'neutral', 'none': 'neutral',
    'contempt': 'contempt', 'contemptuous': 'contempt',
}


def canonical_label(name: str) -> str:
    """Canonical spelling of an emotion name ('Happiness ' -> 'happy'); unknown names come back
    lower-cased and stripped so callers can report them rather than guess."""
    key = str(name).strip().lower().replace('-', ' ').replace('_', ' ')
    return _SYNONYMS.get(key, key)


def is_known_label(name: str) -> bool:
    return canonical_label(name) in CANONICAL_LABELS or canonical_label(name) in EXTRA_LABELS
