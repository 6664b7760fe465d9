"""Copy weights from one Keras model into another wherever the layers fit.

A target layer takes the weights of a source layer when both are of the same
class and every weight has the same shape (`layer.get_weights()`, e.g. a
`Conv2D` kernel `(kh, kw, in_channels, filters)` and bias `(filters,)`).
Layers are paired in one of two ways:

* `match="name"`: a target layer with the source layer of the same name;
* `match="position"`: the i-th layer with weights of the target with the i-th
  layer with weights of the source (layers without weights, e.g. pooling,
  `Flatten` or `Dropout`, are not counted).

Nested models (a `Sequential` or Functional model used as a layer) are
flattened to their leaf layers in both models, so a backbone wrapped in a
sub-model pairs with the same layers written out flat. Layers that do not fit
keep their own (e.g. freshly initialized) weights, and the report says why.

    report = transfer_weights(small_cnn, deeper_cnn, match="name")
    print(format_report(report))
"""

import dataclasses
import os

import keras

from bottleneck_cache.pipeline import checks
from bottleneck_cache.pipeline import files

MATCH_MODES = ("name", "position")
_LOADABLE_EXTENSIONS = (".keras", ".h5", ".hdf5")


@dataclasses.dataclass(frozen=True)
class LayerTransfer:
    """What happened to one target layer that has weights.

    Attributes:
        target_layer: the target layer's name.
        source_layer: the name of the source layer it was paired with, or None
            if there was none.
        copied: whether it took that layer's weights.
        reason: why (or why not), e.g. "shapes differ: source [(3,3,1,16),(16,)]
            target [(3,3,1,32),(32,)]".
    """

    target_layer: str
    source_layer: str | None
    copied: bool
    reason: str


@dataclasses.dataclass(frozen=True)
class TransferReport:
    """The outcome of `transfer_weights`: one row per target layer with weights, in model order.

    Attributes:
        match: how layers were paired, "name" or "position".
        layers: a tuple of `LayerTransfer`.
    """

    match: str
    layers: tuple[LayerTransfer, ...]

    @property
    def num_copied(self):
        """Target layers that took weights."""
        return sum(1 for row in self.layers if row.copied)

    @property
    def num_skipped(self):
        """Target layers with weights that kept their own."""
        return len(self.layers) - self.num_copied


def leaf_layers(model):
    """Returns a model's layers with nested models replaced by their own layers, recursively.

    Args:
        model: a `keras.Model` (Sequential, Functional or subclassed).

    Returns:
        A list of the layers that are not models, in `model.layers` order
        (depth first).
    """
    leaves = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            leaves.extend(leaf_layers(layer))
        else:
            leaves.append(layer)
    return leaves


def _weighted_layers(model):
    """The leaf layers of `model` that have weights (trainable or not)."""
    return [layer for layer in leaf_layers(model) if layer.weights]


def _weight_shapes(layer):
    """A layer's weight shapes, e.g. `[(3, 3, 1, 16), (16,)]`."""
    return [tuple(weight.shape) for weight in layer.get_weights()]


def _format_shapes(shapes):
    """`[(3, 3, 1, 16), (16,)]` as the compact "[(3,3,1,16),(16,)]"."""
    def one(shape):
        return "(" + ",".join(str(size) for size in shape) + ("," if len(shape) == 1 else "") + ")"

    return "[" + ",".join(one(shape) for shape in shapes) + "]"


def _check_pair(source_layer, target_layer):
    """Returns `(fits, reason)` for copying `source_layer`'s weights into `target_layer`."""
    source_type, target_type = type(source_layer).__name__, type(target_layer).__name__
    if type(source_layer) is not type(target_layer):
        return False, f"type differs: source {source_type}, target {target_type}"
    source_shapes, target_shapes = _weight_shapes(source_layer), _weight_shapes(target_layer)
    if source_shapes != target_shapes:
        return False, (f"shapes differ: source {_format_shapes(source_shapes)} "
                       f"target {_format_shapes(target_shapes)}")
    return True, f"same type {target_type} and shapes {_format_shapes(target_shapes)}"


def _pair_by_name(source_layers, target_layers):
    """Yields `(target_layer, source_layer or None, reason if unpaired)`, pairing equal names."""
    by_name = {}
    for layer in source_layers:
        by_name.setdefault(layer.name, []).append(layer)
    for target_layer in target_layers:
        candidates = by_name.get(target_layer.name, [])
        if not candidates:
            yield target_layer, None, f"no layer named {target_layer.name!r} in the source"
        elif len(candidates) > 1:
            yield target_layer, None, (f"{len(candidates)} layers named {target_layer.name!r} in the "
                                       "source (nested models); use --match=position")
        else:
            yield target_layer, candidates[0], None


def _pair_by_position(source_layers, target_layers):
    """Yields `(target_layer, source_layer or None, reason if unpaired)`, pairing the i-th layers."""
    for index, target_layer in enumerate(target_layers):
        if index < len(source_layers):
            yield target_layer, source_layers[index], None
        else:
            yield target_layer, None, "no weights in the source left to pair"


def _check_match(match):
    checks.check_choice(match, "match", MATCH_MODES,
                        fix="Pass --match=name (same layer names) or --match=position (the i-th "
                            "layer with weights of each model).")


def _nothing_matches_error(report, target_name, source_name):
    """The `ValueError` for a transfer in which no target layer could take weights."""
    if not report.layers:
        received = f"the target {target_name!r} has no layers with weights"
    else:
        received = "; ".join(f"{row.target_layer}: {row.reason}" for row in report.layers[:5])
        if len(report.layers) > 5:
            received += f"; ... ({len(report.layers) - 5} more)"
    other = "position" if report.match == "name" else "name"
    return ValueError(
        f"Expected at least one layer of the target {target_name!r} to match a layer of the source "
        f"{source_name!r} by {report.match} (same layer type and weight shapes). Received none: "
        f"{received}. Try --match={other}, or check that the models share layers."
    )


def transfer_weights(source, target, match="name"):
    """Copies weights from `source` into `target` wherever layer type and weight shapes match.

    Only `target` changes, and only its layers listed as copied in the report.
    Nothing is copied if no layer matches (the error is raised first).

    Args:
        source: a built `keras.Model` to copy weights from.
        target: a built `keras.Model` to copy weights into.
        match: "name" pairs layers with the same name; "position" pairs the
            i-th layer with weights of each model (see the module docstring).

    Returns:
        A `TransferReport` with one row per target layer that has weights.

    Raises:
        ValueError: `match` is not "name" or "position", or no target layer
            could take weights.
    """
    _check_match(match)
    source_layers, target_layers = _weighted_layers(source), _weighted_layers(target)
    pair = _pair_by_name if match == "name" else _pair_by_position
    rows, copies = [], []
    for target_layer, source_layer, reason in pair(source_layers, target_layers):
        copied = False
        if source_layer is not None:
            copied, reason = _check_pair(source_layer, target_layer)
        if copied:
            copies.append((source_layer, target_layer))
        rows.append(LayerTransfer(target_layer=target_layer.name,
                                  source_layer=None if source_layer is None else source_layer.name,
                                  copied=copied, reason=reason))
    report = TransferReport(match=match, layers=tuple(rows))
    if not copies:
        raise _nothing_matches_error(report, target.name, source.name)
    for source_layer, target_layer in copies:
        target_layer.set_weights(source_layer.get_weights())
    return report


def _load_model(path, role):
    """Loads a `.keras` or legacy `.h5` model without compiling it.

    Raises:
        ValueError: the file is missing, has another extension, or cannot be read.
    """
    expected = f"Expected --{role} to be a Keras model file (.keras, or a legacy .h5)"
    if not str(path).endswith(_LOADABLE_EXTENSIONS):
        raise ValueError(f"{expected}. Received: {path!r}. Save the model with model.save('model.keras').")
    if not os.path.isfile(path):
        raise ValueError(f"{expected}. Received: {path!r}, which does not exist. Check the path.")
    try:
        return keras.saving.load_model(path, compile=False)
    except (ValueError, OSError, TypeError, KeyError) as error:
        raise ValueError(
            f"{expected}. Received: {path!r}, which Keras could not load ({error}). Check that it "
            "is a whole model saved with model.save(), with any custom layers registered."
        ) from error


def _check_output(output_path, inputs, overwrite):
    """Raises `ValueError` for an output that is not `.keras`, is an input, or exists without
    `overwrite` (see `pipeline.files.check_output_file`)."""
    if not str(output_path).endswith(".keras"):
        raise ValueError(
            f"Expected --output to be a .keras file. Received: {output_path!r}. Pass e.g. "
            "--output=model.keras."
        )
    files.check_output_file(output_path, "--output", inputs, overwrite, files.is_keras_archive)


def transfer_weights_file(source_path, target_path, output_path, match="name", overwrite=False):
    """Copies weights between two saved models and saves the target with them to a new file.

    `target_path` and `source_path` are never changed (an `output_path` that
    is one of them is refused). `output_path` is written atomically: on any failure it is left as it was
    and no temporary file remains.

    Args:
        source_path: the `.keras` (or legacy `.h5`) model to copy weights from.
        target_path: the `.keras` (or legacy `.h5`) model to copy weights into.
        output_path: the `.keras` file to write the target, with its new weights, to.
        match: "name" or "position", as in `transfer_weights`.
        overwrite: replace `output_path` if it exists.

    Returns:
        The `TransferReport` of `transfer_weights`.

    Raises:
        ValueError: a bad `match` or `output_path`, an existing output without
            `overwrite`, a file that cannot be loaded, or no layer matches.
    """
    _check_match(match)
    inputs = (source_path, target_path)
    _check_output(output_path, inputs, overwrite)
    source = _load_model(source_path, "source")
    target = _load_model(target_path, "target")
    report = transfer_weights(source, target, match=match)
    with files.atomic_file(output_path, "--output", inputs, overwrite,
                           files.is_keras_archive) as temporary:
        target.save(temporary)
    return report


def format_report(report):
    """Returns the table the `transfer_weights` command prints.

    One line per target layer with weights (target layer, source layer,
    "copied" or "skipped", reason), then "N of M layers took weights".
    """
    header = ("target layer", "source layer", "result", "reason")
    rows = [(row.target_layer, row.source_layer or "-", "copied" if row.copied else "skipped", row.reason)
            for row in report.layers]
    widths = [max(len(line[column]) for line in [header, *rows]) for column in range(3)]
    lines = []
    for line in [header, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(line[:3], widths, strict=True)]
        lines.append("  ".join([*cells, line[3]]))
    lines.append(f"{report.num_copied} of {len(report.layers)} layers took weights "
                 f"(matched by {report.match})")
    return "\n".join(lines)
