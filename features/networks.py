"""The network registry: every `keras.applications` family, with its preprocessing.

Each entry knows its Keras constructor, its default and minimum input size, its
own `preprocess_input`, and the size of its pooled features, so that what a
network needs travels with it into every cache it writes. Keras is imported only
when a network is built, which keeps `--help` and the registry itself fast.

Besides Keras' families, `alexnet` is Caffe's BVLC AlexNet as the Udacity lab ran
it, built by `features.alexnet`, whose weights come from the lab's
`bvlc-alexnet.npy` (`--weights=PATH`; Keras has no ImageNet weights for it).
"""

import dataclasses
import fnmatch
import hashlib
import importlib
import os
import re

from bottleneck_cache.pipeline import checks

POOLINGS = ("avg", "max", "none")


class NetworkError(ValueError):
    """An unknown network, bad option, or weights that cannot be loaded."""


@dataclasses.dataclass(frozen=True)
class NetworkSpec:
    """What the registry knows of one network.

    Attributes:
        name: canonical name, e.g. `"mobilenet_v2"`.
        constructor_name: the `keras.applications` constructor, e.g. `"MobileNetV2"`.
        module_name: the `keras.applications` module whose `preprocess_input`
            the network needs, e.g. `"mobilenet_v2"`.
        input_size: default (ImageNet) input side, in pixels.
        min_input_size: smallest input side Keras accepts.
        feature_dim: channels of the pooled (`avg` or `max`) features.
        constructor_module: the module holding the constructor: `keras.applications`,
            or this package's own (e.g. `features.alexnet`), which may also
            offer `load_npy_weights(model, path)` for `.npy` weights files.
    """

    name: str
    constructor_name: str
    module_name: str
    input_size: int
    min_input_size: int
    feature_dim: int
    constructor_module: str = "keras.applications"

    @property
    def constructor(self):
        """The Keras constructor, e.g. `keras.applications.MobileNetV2`."""
        return getattr(importlib.import_module(self.constructor_module), self.constructor_name)

    @property
    def preprocess_input(self):
        """The network's own `keras.applications.<module>.preprocess_input`.

        On a float32 NumPy batch it runs a NumPy copy of it, equal bit for bit,
        so that extraction with OpenVINO never imports Keras and TensorFlow
        (about 9 s and 650 MB); anything else (tensors) goes to Keras.
        """
        mode = _PREPROCESS_MODES.get(self.module_name)
        module_name = self.module_name

        def preprocess_input(x):
            if mode is not None and _is_float32_array(x):
                return _numpy_preprocess(x, mode)
            return importlib.import_module(f"keras.applications.{module_name}").preprocess_input(x)

        return preprocess_input

    @property
    def preprocessing(self):
        """A description of the preprocessing, recorded in every cache."""
        return f"rgb; resize=bilinear; keras.applications.{self.module_name}.preprocess_input"


# The `mode` of each keras.applications module's preprocess_input (channels_last), see
# keras/src/applications/imagenet_utils.py; "identity" where the model rescales its own inputs.
_PREPROCESS_MODES = {
    "vgg16": "caffe", "vgg19": "caffe", "resnet": "caffe",
    "resnet_v2": "tf", "inception_v3": "tf", "inception_resnet_v2": "tf", "xception": "tf",
    "mobilenet": "tf", "mobilenet_v2": "tf", "nasnet": "tf",
    "densenet": "torch",
    "mobilenet_v3": "identity", "efficientnet": "identity", "efficientnet_v2": "identity",
    "convnext": "identity",
}
_CAFFE_MEAN = (103.939, 116.779, 123.68)
_TORCH_MEAN = (0.485, 0.456, 0.406)
_TORCH_STD = (0.229, 0.224, 0.225)


def _is_float32_array(x):
    import numpy as np  # pylint: disable=g-import-not-at-top

    return isinstance(x, np.ndarray) and x.dtype == np.float32 and x.shape[-1:] == (3,)


def _numpy_preprocess(x, mode):
    """keras.applications.imagenet_utils' NumPy preprocessing, the same float32 operations in order."""
    import numpy as np  # pylint: disable=g-import-not-at-top

    if mode == "identity":
        return x
    if mode == "tf":
        return x / np.float32(127.5) - np.float32(1.0)
    if mode == "caffe":
        x = np.array(x[..., ::-1])  # RGB -> BGR
        mean, std = _CAFFE_MEAN, None
    else:
        x = x / np.float32(255.0)
        mean, std = _TORCH_MEAN, _TORCH_STD
    for channel in range(3):
        x[..., channel] -= np.float32(mean[channel])
    if std is not None:
        for channel in range(3):
            x[..., channel] /= np.float32(std[channel])
    return x


def _spec(name, constructor_name, module_name, input_size, feature_dim, min_input_size=32):
    return NetworkSpec(name, constructor_name, module_name, input_size, min_input_size, feature_dim)


def _registry():
    specs = [
        _spec("vgg16", "VGG16", "vgg16", 224, 512),
        _spec("vgg19", "VGG19", "vgg19", 224, 512),
        _spec("resnet50", "ResNet50", "resnet", 224, 2048),
        _spec("resnet101", "ResNet101", "resnet", 224, 2048),
        _spec("resnet152", "ResNet152", "resnet", 224, 2048),
        _spec("resnet50_v2", "ResNet50V2", "resnet_v2", 224, 2048),
        _spec("resnet101_v2", "ResNet101V2", "resnet_v2", 224, 2048),
        _spec("resnet152_v2", "ResNet152V2", "resnet_v2", 224, 2048),
        _spec("inception_v3", "InceptionV3", "inception_v3", 299, 2048, min_input_size=75),
        _spec(
            "inception_resnet_v2", "InceptionResNetV2", "inception_resnet_v2", 299, 1536,
            min_input_size=75,
        ),
        _spec("xception", "Xception", "xception", 299, 2048, min_input_size=71),
        _spec("mobilenet", "MobileNet", "mobilenet", 224, 1024),
        _spec("mobilenet_v2", "MobileNetV2", "mobilenet_v2", 224, 1280),
        _spec("mobilenet_v3_small", "MobileNetV3Small", "mobilenet_v3", 224, 576),
        _spec("mobilenet_v3_large", "MobileNetV3Large", "mobilenet_v3", 224, 960),
        _spec("densenet121", "DenseNet121", "densenet", 224, 1024),
        _spec("densenet169", "DenseNet169", "densenet", 224, 1664),
        _spec("densenet201", "DenseNet201", "densenet", 224, 1920),
        _spec("nasnet_mobile", "NASNetMobile", "nasnet", 224, 1056),
        _spec("nasnet_large", "NASNetLarge", "nasnet", 331, 4032),
        _spec("convnext_tiny", "ConvNeXtTiny", "convnext", 224, 768),
        _spec("convnext_small", "ConvNeXtSmall", "convnext", 224, 768),
        _spec("convnext_base", "ConvNeXtBase", "convnext", 224, 1024),
        _spec("convnext_large", "ConvNeXtLarge", "convnext", 224, 1536),
        _spec("convnext_xlarge", "ConvNeXtXLarge", "convnext", 224, 2048),
        # Caffe's BVLC AlexNet as the Udacity lab ran it (features/alexnet.py); Caffe preprocessing.
        NetworkSpec("alexnet", "AlexNet", "vgg16", 227, 57, 256,
                    constructor_module="bottleneck_cache.features.alexnet"),
    ]
    efficientnet = [(224, 1280), (240, 1280), (260, 1408), (300, 1536),
                    (380, 1792), (456, 2048), (528, 2304), (600, 2560)]
    for i, (size, dim) in enumerate(efficientnet):
        specs.append(_spec(f"efficientnet_b{i}", f"EfficientNetB{i}", "efficientnet", size, dim))
    efficientnet_v2 = [("B0", 224, 1280), ("B1", 240, 1280), ("B2", 260, 1408), ("B3", 300, 1536),
                       ("S", 384, 1280), ("M", 480, 1280), ("L", 480, 1280)]
    for variant, size, dim in efficientnet_v2:
        specs.append(_spec(
            f"efficientnet_v2_{variant.lower()}", f"EfficientNetV2{variant}", "efficientnet_v2",
            size, dim,
        ))
    return {spec.name: spec for spec in specs}


# Blocks, for fine_tune --unfreeze_blocks: (families, a pattern over layer names whose groups
# name the block, the block name); the pattern that matches most of a network's layers wins.
BLOCK_PATTERNS = (
    ("ResNet, ResNetV2, DenseNet", r"^conv(\d+)_block(\d+)_", "conv{}_block{}"),
    ("InceptionResNetV2", r"^block(\d+)_(\d+)_", "block{}_{}"),
    ("VGG, Xception", r"^block(\d+)_", "block{}"),
    ("EfficientNet, EfficientNetV2", r"^block(\d+)[a-z]_", "block{}"),
    ("MobileNetV2", r"^block_(\d+)_", "block_{}"),
    ("MobileNetV3", r"^expanded_conv(?:_(\d+))?_", "expanded_conv_{}"),
    ("MobileNet", r"^conv_(?:dw_|pw_|pad_)?(\d+)(?:_|$)", "conv_{}"),
    ("InceptionV3", r"^mixed(\d+)$", "mixed{}"),
    ("ConvNeXt", r"_stage_(\d+)_", "stage_{}"),
    ("AlexNet", r"^(conv\d|fc\d)$", "{}"),
)

# The Udacity lab's short names.
ALIASES = {"vgg": "vgg16", "resnet": "resnet50", "inception": "inception_v3"}


def _normalize(name):
    return re.sub(r"[^a-z0-9]", "", name.lower())


def list_networks(pattern="*"):
    """Lists canonical network names matching a shell-style pattern.

    Args:
        pattern: e.g. `"resnet*"`.

    Returns:
        Sorted names.
    """
    return sorted(name for name in _registry() if fnmatch.fnmatch(name, pattern.lower()))


def get_network(name):
    """Looks a network up by canonical name, Keras class name or lab alias.

    `"mobilenet_v2"`, `"MobileNetV2"` and `"mobilenetv2"` name the same network;
    `"vgg"`, `"resnet"` and `"inception"` are the lab's aliases.

    Args:
        name: the network's name.

    Returns:
        A `NetworkSpec`.

    Raises:
        NetworkError: the name is unknown; the message lists the valid names.
    """
    registry = _registry()
    if not isinstance(name, str) or not name.strip():
        raise NetworkError(
            f"Expected --network to name a network: one of {', '.join(sorted(registry))} (or the "
            f"aliases {', '.join(sorted(ALIASES))}). Received: {name!r}. Pass e.g. --network=mobilenet_v2."
        )
    wanted = ALIASES.get(name.lower(), name)
    by_key = {_normalize(spec.name): spec for spec in registry.values()}
    spec = by_key.get(_normalize(wanted))
    if spec is None:
        raise NetworkError(
            f"Unknown network {name!r}. Expected one of: {', '.join(sorted(registry))} "
            f"(or the aliases {', '.join(sorted(ALIASES))}). Pass one of them, e.g. --network=mobilenet_v2."
        )
    return spec


def check_pooling(pooling):
    """Raises `NetworkError` unless `pooling` is one of `POOLINGS`."""
    checks.check_choice(pooling, "pooling", POOLINGS, error=NetworkError)


def resolve_input_size(spec, input_size=None):
    """Returns the `(height, width)` images are resized to for `spec`.

    Args:
        spec: a `NetworkSpec`.
        input_size: a side in pixels overriding the network's default, or None.

    Raises:
        NetworkError: `input_size` is below the network's minimum.
    """
    size = spec.input_size if input_size is None else int(input_size)
    if size < spec.min_input_size:
        raise NetworkError(
            f"Expected --input_size >= {spec.min_input_size}: {spec.name} needs inputs of at least "
            f"{spec.min_input_size}x{spec.min_input_size} pixels. Received: input_size={size}. "
            f"Pass --input_size={spec.min_input_size} or larger."
        )
    return (size, size)


def weights_identity(weights):
    """Returns `(identity, sha256)` recorded in a cache for a weights option.

    Args:
        weights: `"imagenet"`, `"none"`, or a path to a weights file.

    Raises:
        NetworkError: a path that does not exist.
    """
    if weights in ("imagenet", "none"):
        return weights, ""
    if not os.path.isfile(weights):
        raise NetworkError(
            f"Expected --weights to be 'imagenet', 'none', or a path to a weights file. "
            f"Received: {weights!r}, which is not a file. Check the path, or pass --weights=imagenet "
            "or --weights=none."
        )
    digest = hashlib.sha256()
    with open(weights, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return f"file:{os.path.basename(weights)}", digest.hexdigest()


def _keras_models_dir():
    home = os.environ.get("KERAS_HOME", os.path.join(os.path.expanduser("~"), ".keras"))
    return os.path.join(home, "models")


class WeightsDownloadError(NetworkError):
    """Keras could not download a network's ImageNet weights (e.g. no internet)."""


def _download_error(spec, error):
    match = re.search(r"(https?://\S+?\.h5)", str(error))
    url = match.group(1) if match else "(its URL)"
    filename = os.path.basename(url) if match else f"the {spec.constructor_name} weights file"
    reason = str(error).split(".h5: ", 1)[-1]
    return WeightsDownloadError(
        f"Could not download the ImageNet weights for {spec.name}: Keras wanted {filename} from "
        f"{url} ({reason}). Either put that file at "
        f"{os.path.join(_keras_models_dir(), filename)} (Keras looks there before downloading), "
        f"or pass --weights=PATH with a {spec.constructor_name} weights file, e.g. one saved "
        "with model.save_weights()."
    )


def _construct(spec, weights, include_top, pooling, input_size):
    kwargs = {"weights": "imagenet" if weights == "imagenet" else None, "include_top": include_top}
    if include_top:
        # Keras builds the classifier top only at the ImageNet input size.
        kwargs["input_shape"] = (spec.input_size, spec.input_size, 3)
    else:
        kwargs["input_shape"] = (*input_size, 3)
        kwargs["pooling"] = None if pooling == "none" else pooling
    try:
        model = spec.constructor(**kwargs)
    except NetworkError:  # Our own constructors' messages say what to do.
        raise
    except Exception as error:  # Keras raises a bare Exception on a failed download.
        if weights == "imagenet" and "URL fetch failure" in str(error):
            raise _download_error(spec, error) from None
        arguments = ", ".join(f"{name}={value!r}" for name, value in kwargs.items())
        raise NetworkError(
            f"Expected {spec.constructor_module}.{spec.constructor_name}({arguments}) to build the "
            f"network. Received: {type(error).__name__}: {str(error).rstrip('.')}. Check --input_size, "
            f"--layer and --weights for {spec.name}."
        ) from None
    if weights not in ("imagenet", "none"):
        module = importlib.import_module(spec.constructor_module)
        if weights.lower().endswith(".npy") and hasattr(module, "load_npy_weights"):
            module.load_npy_weights(model, weights)
        else:
            _load_weights_file(model, spec, weights, include_top)
    return model


def _load_weights_file(model, spec, path, include_top):
    """Loads `path` into `model`, refusing a file that does not fit every layer.

    Keras only warns when parts of a `.weights.h5` file do not match the model
    (those layers keep their random weights), so its warnings become errors here.
    """
    import warnings  # pylint: disable=g-import-not-at-top

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model.load_weights(path)
            error = None
        except Exception as exception:  # h5py, ValueError: the file does not fit.
            error = exception
    if error is None:
        problems = [str(w.message) for w in caught if "saving" in w.filename]
        error = problems[0] if problems else None
    if error is not None:
        raise NetworkError(
            f"Could not load weights from {path} into {spec.constructor_name}("
            f"include_top={include_top}): {str(error).splitlines()[0].rstrip(':.')}. Expected a Keras weights "
            f"file saved from that architecture{'' if include_top else ' without its top'}. Pass the "
            f"weights file of {spec.name} (model.save_weights() of the same constructor)."
        )


def _layer_needs_top(spec, layer, input_size):
    """Whether `layer` is only in the network with its classifier top.

    Looks on random-weight builds, so that the real weights are fetched once,
    for the right variant.

    Raises:
        NetworkError: no such layer, or a top layer with a non-default input size.
    """
    without_top = [l.name for l in _construct(spec, "none", False, "avg", input_size).layers]
    if layer in without_top:
        return False
    with_top = [l.name for l in _construct(spec, "none", True, "avg", input_size).layers]
    if layer not in with_top:
        raise NetworkError(
            f"{spec.name} has no layer named {layer!r}. Expected one of: {', '.join(with_top)}. Pass "
            "--layer=<one of them>, or leave --layer out for the pooled last block."
        )
    if input_size != (spec.input_size, spec.input_size):
        raise NetworkError(
            f"Expected no --input_size (or {spec.input_size}) for --layer={layer}. "
            f"Layer {layer!r} is in the classifier top of {spec.name}, which needs the ImageNet "
            f"input size {spec.input_size}. Received: input_size={input_size[0]}. Drop "
            "--input_size or pick another layer."
        )
    return True


def build_feature_model(spec, weights="imagenet", pooling="avg", layer=None, input_size=None,
                        seed=None):
    """Builds the frozen network that maps preprocessed images to features.

    Args:
        spec: a `NetworkSpec`.
        weights: `"imagenet"`, `"none"` (random), or a path to a weights file.
        pooling: `"avg"`, `"max"` or `"none"`, applied to the last convolutional
            block when `layer` is None.
        layer: name of a layer whose output to take instead (e.g. VGG16's
            `"fc1"`, which needs the classifier top and the 224 input size).
            A spatial `(batch, h, w, c)` output is pooled by `pooling` too.
        input_size: `(height, width)`, or None for the network's default.
        seed: with `weights="none"`, Keras' global seed is set to it first, so
            that the same seed builds the same random weights (a resumed run,
            every shard, and `predict` for a head on those features); None
            leaves the global random state as it is.

    Returns:
        A non-trainable `keras.Model` from `(batch, height, width, 3)`
        preprocessed float32 images to `(batch, *feature_shape)` features.

    Raises:
        NetworkError: bad pooling, unknown layer, or weights that cannot be
            downloaded or loaded.
    """
    import keras  # pylint: disable=g-import-not-at-top

    check_pooling(pooling)
    if weights == "none" and seed is not None:
        keras.utils.set_random_seed(int(seed))
    input_size = input_size or (spec.input_size, spec.input_size)
    include_top = bool(layer) and _layer_needs_top(spec, layer, input_size)
    base = _construct(spec, weights, include_top, pooling, input_size)
    if layer:
        outputs = base.get_layer(layer).output
        if len(outputs.shape) == 4 and pooling != "none":
            pool = {"avg": keras.layers.GlobalAveragePooling2D, "max": keras.layers.GlobalMaxPooling2D}
            outputs = pool[pooling](name=f"{pooling}_pool_{layer}")(outputs)
        base = keras.Model(base.inputs, outputs, name=f"{spec.name}_{layer}")
    base.trainable = False
    return base
