"""AlexNet as the Udacity lab ran it: Caffe's BVLC model in Keras 3, weights from bvlc-alexnet.npy.

The architecture is the lab's TensorFlow port of Caffe's BVLC AlexNet
(`alexnet.py` there), layer for layer, on 227x227x3 inputs:

    conv1   96 11x11 stride 4, 'same' padding, ReLU -> lrn1 -> pool1 (max 3x3 stride 2)
    conv2  256  5x5, 2 groups, ReLU                  -> lrn2 -> pool2
    conv3  384  3x3, ReLU
    conv4  384  3x3, 2 groups, ReLU
    conv5  256  3x3, 2 groups, ReLU                          -> pool5 (6x6x256 at 227)
    fc6   4096, ReLU;  fc7 4096, ReLU;  fc8 1000 logits -> prob (softmax)

Convolutions after conv1 keep their size ('same'); pools are 'valid'. The lab
pads conv1 'same' (Caffe pads none); both give pool5 6x6 at 227, and 'same'
reproduces the lab's features. The groups are `Conv2D(groups=2)`, whose kernel
`(kh, kw, in_channels / 2, out_channels)` is the layout of the grouped kernels in
bvlc-alexnet.npy: output channels `[0, out/2)` see input channels `[0, in/2)`,
the others the rest, as the lab's split convolutions do. Local response
normalization is `LocalResponseNormalization` (depth radius 2, alpha 2e-5, beta
0.75, bias 1, as the lab's `tf.nn.local_response_normalization`). `fc8` holds
the logits, as in the lab; `prob` is their softmax.

Inputs are Caffe's: BGR, minus the ImageNet mean pixel (B 103.939, G 116.779,
R 123.68), unscaled (the registry's `keras.applications.vgg16.preprocess_input`,
mode "caffe"), as the BVLC model was trained.

Keras has no AlexNet weights: `weights` is a path to the lab's
bvlc-alexnet.npy (a pickled dict `{'conv1': [W, b], ..., 'fc8': [W, b]}`,
written by `np.save`), loaded by `load_npy_weights` with the data-only unpickler,
so no code stored in the file runs.
"""

import keras
import numpy as np

from bottleneck_cache.features import networks
from bottleneck_cache.pipeline import datasets

INPUT_SIZE = 227
LAYER_NAMES = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8")
WEIGHTS_FILENAME = "bvlc-alexnet.npy"
IMAGENET_HINT = (
    "Keras has no ImageNet weights for AlexNet. Get the Udacity lab's "
    f"{WEIGHTS_FILENAME} (Caffe's BVLC AlexNet converted to NumPy, about 233 MB; the lab's "
    "AlexNet feature-extraction project downloads it) and pass --weights=PATH/"
    f"{WEIGHTS_FILENAME}, or --weights=none for random weights."
)
_PACKAGE = "bottleneck_cache"


@keras.saving.register_keras_serializable(package=_PACKAGE)
class LocalResponseNormalization(keras.layers.Layer):
    """Local response normalization across channels, as `tf.nn.local_response_normalization`.

    `output = x / (bias + alpha * sum(x[..., c - r : c + r + 1] ** 2)) ** beta`,
    for channels-last `x` of any rank; no weights.

    Args:
        depth_radius: `r`, the half-width of the channel window.
        alpha: scale of the sum of squares (Caffe's alpha divided by the window size).
        beta: exponent.
        bias: added before the exponent.
    """

    def __init__(self, depth_radius=2, alpha=2e-5, beta=0.75, bias=1.0, **kwargs):
        super().__init__(**kwargs)
        self.depth_radius = int(depth_radius)
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.bias = float(bias)

    def call(self, inputs):
        ops = keras.ops
        radius, channels = self.depth_radius, inputs.shape[-1]
        padding = [[0, 0]] * (len(inputs.shape) - 1) + [[radius, radius]]
        squares = ops.pad(ops.square(inputs), padding)
        total = squares[..., 0:channels]
        for offset in range(1, 2 * radius + 1):
            total = total + squares[..., offset:offset + channels]
        return inputs / ops.power(self.bias + self.alpha * total, self.beta)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "depth_radius": self.depth_radius, "alpha": self.alpha,
                "beta": self.beta, "bias": self.bias}


def _check_arguments(include_top, weights, input_shape, pooling):
    if weights == "imagenet":
        raise networks.NetworkError(f"Expected weights=None for AlexNet. Received: weights='imagenet'. "
                                    f"{IMAGENET_HINT}")
    if weights is not None:
        raise networks.NetworkError(
            f"Expected AlexNet(weights=None). Received: weights={weights!r}. Build it with "
            f"weights=None, then load {WEIGHTS_FILENAME} with load_npy_weights(model, path)."
        )
    if include_top and tuple(input_shape) != (INPUT_SIZE, INPUT_SIZE, 3):
        raise networks.NetworkError(
            f"Expected inputs of {INPUT_SIZE}x{INPUT_SIZE}x3 for AlexNet's fc layers. Received: "
            f"input_shape={tuple(input_shape)}. Drop --input_size, or take a conv layer."
        )
    if pooling not in (None, "avg", "max"):
        raise networks.NetworkError(
            f"Expected pooling to be None, 'avg' or 'max'. Received: pooling={pooling!r}. Pass one "
            f"of them (--pooling=none, avg or max).")


def AlexNet(  # pylint: disable=invalid-name  (named as the keras.applications constructors)
        include_top=True, weights=None, input_shape=None, pooling=None, classes=1000):
    """Builds AlexNet, with the signature of a `keras.applications` constructor.

    Args:
        include_top: whether to add `flatten`, `fc6`, `fc7`, `fc8` and `prob`
            (needs 227x227 inputs).
        weights: None (random; load a weights file with `load_npy_weights`);
            `"imagenet"` is refused, since Keras has none for AlexNet.
        input_shape: `(height, width, 3)`, default `(227, 227, 3)`.
        pooling: without the top, None (pool5's `(h, w, 256)`), `"avg"` or `"max"`
            (`(256,)`).
        classes: units of `fc8`.

    Returns:
        A `keras.Model` named "alexnet" from `(batch, *input_shape)` Caffe-preprocessed
        images to `(batch, classes)` probabilities, or pool5 features without the top.

    Raises:
        NetworkError: `weights="imagenet"` (the message says where to get the
            lab's file), or a top with another input size.
    """
    input_shape = tuple(input_shape or (INPUT_SIZE, INPUT_SIZE, 3))
    _check_arguments(include_top, weights, input_shape, pooling)
    layers = keras.layers
    inputs = keras.Input(shape=input_shape, name="input_layer")
    x = layers.Conv2D(96, 11, strides=4, padding="same", activation="relu", name="conv1")(inputs)
    x = LocalResponseNormalization(name="lrn1")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool1")(x)
    x = layers.Conv2D(256, 5, padding="same", groups=2, activation="relu", name="conv2")(x)
    x = LocalResponseNormalization(name="lrn2")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool2")(x)
    x = layers.Conv2D(384, 3, padding="same", activation="relu", name="conv3")(x)
    x = layers.Conv2D(384, 3, padding="same", groups=2, activation="relu", name="conv4")(x)
    x = layers.Conv2D(256, 3, padding="same", groups=2, activation="relu", name="conv5")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool5")(x)
    if include_top:
        x = layers.Flatten(name="flatten")(x)
        x = layers.Dense(4096, activation="relu", name="fc6")(x)
        x = layers.Dense(4096, activation="relu", name="fc7")(x)
        x = layers.Dense(classes, name="fc8")(x)
        x = layers.Activation("softmax", name="prob")(x)
    elif pooling == "avg":
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    elif pooling == "max":
        x = layers.GlobalMaxPooling2D(name="max_pool")(x)
    return keras.Model(inputs, x, name="alexnet")


def read_npy_weights(path):
    """Reads bvlc-alexnet.npy with the data-only unpickler.

    The file is NumPy's `.npy` of a 0-d object array holding the dict (what
    `np.save(path, dict)` writes); a plain pickle of the dict is read too. The
    `.npy` header is parsed by NumPy without unpickling.

    Args:
        path: the weights file.

    Returns:
        `{layer name: [W, b]}` as stored.

    Raises:
        NetworkError: the file is unreadable, would run code, or holds
            anything but a dict keyed by AlexNet's layer names.
    """
    def refuse(received):
        return networks.NetworkError(
            f"Expected {path} to be the lab's {WEIGHTS_FILENAME}: a pickled dict "
            f"{{'conv1': [W, b], ..., 'fc8': [W, b]}} of NumPy arrays. Received: {received}. "
            f"Pass the lab's {WEIGHTS_FILENAME} as it was downloaded."
        )

    try:
        with open(path, "rb") as f:
            if f.read(6) == b"\x93NUMPY":
                f.seek(0)
                version = np.lib.format.read_magic(f)
                header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                          else np.lib.format.read_array_header_2_0)
                _, _, dtype = header(f)
                if not dtype.hasobject:
                    raise refuse(f"a .npy file of a {dtype} array, not of a pickled dict")
            else:
                f.seek(0)
            data = datasets.load_data_pickle(f)
    except networks.NetworkError:
        raise
    except datasets.UnsafePickleError as error:
        raise refuse(f"a pickle that would call code ({str(error).rstrip('.')}); it was refused "
                     "before anything in it ran") from None
    except Exception as error:  # Unpickling a damaged file can raise almost anything.
        raise refuse(f"a file that is not a readable pickle ({type(error).__name__}: "
                     f"{str(error).rstrip('.')})") from None
    if isinstance(data, np.ndarray) and data.dtype.hasobject and data.shape == ():
        data = data.item()
    if not isinstance(data, dict) or not set(data) <= set(LAYER_NAMES):
        if isinstance(data, dict):
            what = f"a dict with keys {sorted(map(str, data))}"
        elif isinstance(data, np.ndarray):
            what = f"an array of dtype {data.dtype}, shape {data.shape}"
        else:
            what = f"a {type(data).__name__}"
        raise refuse(what)
    return data


def load_npy_weights(model, path):
    """Sets every AlexNet layer of `model` from bvlc-alexnet.npy, checking each shape first.

    Layers of `model` named `conv1`..`fc8` take `[W, b]` from the file (a
    model without its top takes conv1..conv5); nothing is set unless all fit.

    Args:
        model: an `AlexNet` model.
        path: the lab's bvlc-alexnet.npy.

    Raises:
        NetworkError: see `read_npy_weights`; or a layer missing from the file,
            or with arrays of other shapes (the message names the layer and
            both shapes).
    """
    data = read_npy_weights(path)
    assignments = []
    for layer in model.layers:
        if layer.name not in LAYER_NAMES:
            continue
        expected = [tuple(w.shape) for w in layer.weights]
        stored = data.get(layer.name)
        if stored is None:
            raise networks.NetworkError(
                f"Expected {path} to hold AlexNet's {layer.name} weights {expected}. Received: "
                f"no {layer.name!r} key (keys: {', '.join(sorted(data))}). Pass the lab's "
                f"{WEIGHTS_FILENAME}."
            )
        arrays = list(stored) if isinstance(stored, (list, tuple)) else [stored]
        received = [tuple(np.shape(a)) if isinstance(a, np.ndarray) else type(a).__name__
                    for a in arrays]
        if received != expected:
            raise networks.NetworkError(
                f"Expected {layer.name} weights of shapes {expected} (W, b) in {path}. Received: "
                f"{received}. The file is not Caffe's BVLC AlexNet; pass the lab's "
                f"{WEIGHTS_FILENAME}."
            )
        assignments.append((layer, [np.asarray(a, dtype=np.float32) for a in arrays]))
    for layer, arrays in assignments:
        layer.set_weights(arrays)
