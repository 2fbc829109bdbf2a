"""Keras architectures for 48x48 grayscale faces: the seed's tutorial network and the project default.

Every model takes float32 pixels in 0..255, shape (N, 48, 48, 1), and outputs class probabilities:
scaling lives inside the graph so the exported .tflite needs no preprocessing beyond the crop.
"""
import keras
from keras import layers

INPUT_SIZE = 48


def build_tutorial(num_classes: int) -> keras.Model:
    """The seed's tutorial network (Reshape, Conv, MaxPool, BatchNorm, Conv, MaxPool, Dropout, Flatten, Dense x2, Softmax)."""
    inputs = keras.Input((INPUT_SIZE, INPUT_SIZE, 1), name='face')
    x = layers.Rescaling(1.0 / 255)(inputs)
    x = layers.Reshape((INPUT_SIZE, INPUT_SIZE, 1))(x)
    x = layers.Conv2D(32, 3, activation='relu')(x)
    x = layers.MaxPooling2D(2)(x)
    x = layers.BatchNormalization()(x)
    x = layers.Conv2D(64, 3, activation='relu')(x)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Dropout(0.3)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(128, activation='relu')(x)
    x = layers.Dense(num_classes)(x)
    outputs = layers.Softmax(name='probs')(x)
    return keras.Model(inputs, outputs, name='tutorial')


def _conv_bn(x, filters, kernel=3, strides=1, name=None):
    x = layers.Conv2D(filters, kernel, strides=strides, padding='same', use_bias=False, name=name)(x)
    x = layers.BatchNormalization()(x)
    return layers.ReLU()(x)


def _res_stage(x, filters):
    """Two 3x3 convs with an identity (or 1x1 projection) shortcut: VGG cost, ResNet trainability."""
    shortcut = x
    if x.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, use_bias=False)(x)
        shortcut = layers.BatchNormalization()(shortcut)
    y = _conv_bn(x, filters)
    y = layers.Conv2D(filters, 3, padding='same', use_bias=False)(y)
    y = layers.BatchNormalization()(y)
    return layers.ReLU()(layers.Add()([y, shortcut]))


def build_emonet(num_classes: int, width: int = 32, dropout: float = 0.4) -> keras.Model:
    """Project default: a narrow residual VGG (48 -> 24 -> 12 -> 6 -> 3), global pooling, one dense head.

    Plain 3x3 convolutions rather than depthwise ones: on 2 CPU cores they train faster in TensorFlow
    and run well in LiteRT/XNNPACK. The first stage is one cheap conv (full resolution is expensive and
    48x48 faces carry little detail there); the width doubles at each halving.
    """
    inputs = keras.Input((INPUT_SIZE, INPUT_SIZE, 1), name='face')
    x = layers.Rescaling(1.0 / 127.5, offset=-1.0)(inputs)
    x = _conv_bn(x, width // 2)
    x = _conv_bn(x, width)
    x = layers.MaxPooling2D(2)(x)                      # 24
    x = _res_stage(x, width * 2)
    x = layers.MaxPooling2D(2)(x)                      # 12
    x = _res_stage(x, width * 4)
    x = layers.MaxPooling2D(2)(x)                      # 6
    x = _res_stage(x, width * 8)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(dropout)(x)
    x = layers.Dense(num_classes)(x)
    outputs = layers.Softmax(name='probs')(x)
    return keras.Model(inputs, outputs, name=f'emonet_w{width}')


ARCHS = {'tutorial': build_tutorial, 'emonet': build_emonet}


def build_model(arch: str, num_classes: int, width: int | None = None) -> keras.Model:
    if arch not in ARCHS:
        raise ValueError(f'unknown arch {arch!r}; choose one of {sorted(ARCHS)}')
    if arch == 'emonet' and width:
        return build_emonet(num_classes, width=width)
    return ARCHS[arch](num_classes)
