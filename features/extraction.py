"""Stage one: run a frozen network over a dataset once and cache its features."""

import collections
import concurrent.futures
import dataclasses
import hashlib
import importlib.metadata
import json
import os
import re
import shutil
from typing import Optional

import numpy as np
from absl import logging

from bottleneck_cache.features import engines
from bottleneck_cache.features import networks
from bottleneck_cache.features import precision as precisions
from bottleneck_cache.pipeline import augment as augmentation
from bottleneck_cache.pipeline import cache
from bottleneck_cache.pipeline import checks
from bottleneck_cache.pipeline import datasets
from bottleneck_cache.pipeline import files
from bottleneck_cache.pipeline import jobs

_VERSIONED_PACKAGES = ("bottleneck-cache", "tensorflow", "keras", "h5py", "numpy")
BAD_IMAGE_POLICIES = ("skip", "fail")


@dataclasses.dataclass(frozen=True)
class ExtractionResult:
    """What `extract_features` did for one split.

    Attributes:
        split: `"train"` or `"validation"`.
        path: the cache file.
        num_samples: rows in the cache.
        num_skipped: images left out because they could not be decoded.
        reused: True if an identical cache was already there.
    """

    split: str
    path: str
    num_samples: int
    num_skipped: int
    reused: bool


def library_versions():
    """Returns a JSON object of the versions of the packages that shape features."""
    versions = {}
    for package in _VERSIONED_PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return json.dumps(versions, sort_keys=True)


def dataset_digest(split):
    """Returns a SHA-256 over what a split holds.

    Covers the class names, sample ids and labels, and the images themselves:
    each file's size and modification time, or the pixels of array formats. A
    changed, added or removed image changes the digest.
    """
    digest = hashlib.sha256()
    payload = [list(split.class_names), list(split.ids), [int(v) for v in split.labels]]
    digest.update(json.dumps(payload, separators=(",", ":")).encode("utf-8"))
    if split.paths is not None:
        for path in split.paths:
            try:
                stat = os.stat(path)
            except OSError:  # A dangling link or a link loop: a bad image, skipped or refused later.
                digest.update(b"unreadable;")
                continue
            digest.update(f"{stat.st_size}:{stat.st_mtime_ns};".encode("ascii"))
    else:
        digest.update(np.ascontiguousarray(split.images).tobytes())
    return digest.hexdigest()


def default_dataset_name(dataset_dir):
    """Returns the dataset name implied by its folder or file (`"digits"` for none)."""
    if not dataset_dir:
        return "digits"
    base = os.path.basename(os.path.normpath(dataset_dir))
    return os.path.splitext(base)[0] if os.path.isfile(dataset_dir) else base


def suggested_name(value):
    """A valid `--dataset` value close to `value`: other characters become `_`."""
    name = re.sub(r"[^A-Za-z0-9._\-]+", "_", value or "").strip("._-")
    return name or "dataset"


def _check_name(kind, value, dataset_dir=None):
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._\-]*", value or ""):
        fix = (f"The name comes from the dataset's folder or file name {dataset_dir!r}: pass e.g. "
               f"--{kind}={suggested_name(value)} to name it." if dataset_dir
               else f"Pass e.g. --{kind}={suggested_name(value)}.")
        raise ValueError(
            f"Expected --{kind} to be letters, digits, '.', '_' or '-' (it becomes part of the "
            f"cache file names). Received: {kind}={value!r}. {fix}"
        )


def _check_existing(path, metadata, overwrite):
    """Returns the `cache.CacheInfo` of an intact cache at `path` made as `metadata` says.

    Returns None when there is none to reuse, and always with `overwrite`.

    Raises:
        cache.CacheError: `path` holds another or an invalid cache and
            `overwrite` is False, or something that is not HDF5 at all.
    """
    if os.path.lexists(path) and not cache.is_hdf5_file(path):
        # Not even a damaged cache: a user's file under a cache's name is never replaced.
        raise cache.CacheError(
            f"Expected {path} to be a cache this tool wrote, or nothing. Received: "
            f"{'a folder' if os.path.isdir(path) else 'a file that is not HDF5'}, which "
            "--overwrite does not replace. Move it away, or choose another --output_dir.")
    if overwrite or not os.path.exists(path):
        return None
    try:
        info = cache.verify_cache(path)
    except cache.CacheError as error:
        raise cache.CacheError(f"{error} (Or pass --overwrite to replace it.)") from None
    if info.fingerprint == metadata.fingerprint():
        return info
    differences = "; ".join(f"{d} (existing != requested)" for d in info.metadata.differences(metadata))
    raise cache.CacheError(
        f"{path} already holds a cache made with other settings: {differences}. "
        "Pass --overwrite to replace it, or choose another --output_dir."
    )


def file_network_name(network, spec):
    """The network's part of a cache file name: a lab alias as given, else the canonical name."""
    return network.lower() if network.lower() in networks.ALIASES else spec.name


LARGE_CACHE_BYTES = 1 << 30  # a cache estimated above this is announced before it is written


def estimated_cache_bytes(num_images, augment_copies, feature_shape):
    """Bytes of a cache of `num_images` images: float32 features of every view, labels, views.

    Args:
        num_images: images in the cache.
        augment_copies: augmented views per image besides the image itself.
        feature_shape: the network's output shape for one image, e.g. `(7, 7, 512)`.
    """
    rows = num_images * (1 + augment_copies)
    return rows * (4 * int(np.prod(feature_shape, dtype=np.int64)) + 8 + 2)


def announce_cache_size(path, num_images, augment_copies, feature_shape):
    """Logs a warning, before any work, when the cache at `path` will exceed `LARGE_CACHE_BYTES`.

    Returns:
        The estimated size in bytes.
    """
    size = estimated_cache_bytes(num_images, augment_copies, feature_shape)
    if size > LARGE_CACHE_BYTES:
        folder = os.path.dirname(os.path.abspath(path))
        free = shutil.disk_usage(folder).free if os.path.isdir(folder) else None
        rows = num_images * (1 + augment_copies)
        logging.warning(
            "Writing a cache of about %.1f GiB to %s (%d rows of %s float32 features); about twice "
            "that is needed until its checkpoints are merged%s. For a smaller cache, use "
            "--pooling=avg, a later --layer or a smaller --input_size; Ctrl-C stops.",
            size / (1 << 30), path, rows, "x".join(str(d) for d in feature_shape),
            "" if free is None else f" ({free / (1 << 30):.1f} GiB free there)")
    return size


def _batches(start, stop, batch_size):
    return [(first, min(first + batch_size, stop)) for first in range(start, stop, batch_size)]


def _prepared(split, spec, indices, input_size, on_bad_image, augment):
    """Decodes a batch and its augmented views, ready for the network.

    Returns:
        `(inputs, kept, skipped)`: a list of `(views, (k, height, width, 3))`
        float32 network inputs (view 0 first, then each augmented copy), the
        `(k,)` split indices they come from, and `(id, reason)` of each image
        left out.
    """
    decoded = datasets.decode_images(split.image, indices, split.ids, input_size, on_bad_image)
    images, kept, skipped = decoded.images, decoded.kept, decoded.skipped
    inputs = [(0, images)]
    if augment is not None and len(kept):
        transforms, copies, seed = augment
        inputs += [(copy, augmentation.augment_batch(images, transforms, seed, kept, copy))
                   for copy in range(1, copies + 1)]
    return [(view, spec.preprocess_input(batch.astype(np.float32)))
            for view, batch in inputs], kept, skipped


def _write_rows(writer, split, kept, outputs, skipped):
    """Appends a batch's rows (one per kept image and view) and its skipped images."""
    ids = [split.ids[k] for k in kept]
    for view, features in outputs:
        writer.append(features, split.labels[kept], ids, np.full(len(kept), view, np.int16))
    if skipped:
        writer.skip(*zip(*skipped))


def _extract_samples(engine, spec, split, start, stop, input_size, batch_size, on_bad_image,
                     writer, progress, augment=None):
    """Runs `engine` over samples `[start, stop)` of `split` and appends the rows to `writer`.

    Three stages overlap, so that the network is the only bottleneck: worker
    threads decode, augment and preprocess the next batches (one per core, in
    parallel; PIL and NumPy release the GIL), the engine runs on this thread,
    and a writer thread appends the previous batch's rows. At most
    `cores + 1` batches are in flight, so memory does not grow with the split.
    """
    bounds = _batches(start, stop, batch_size)
    workers = max(1, os.cpu_count() or 1)
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as loaders, \
            concurrent.futures.ThreadPoolExecutor(max_workers=1) as writers:
        def load(bound):
            return loaders.submit(_prepared, split, spec, np.arange(*bound), input_size,
                                  on_bad_image, augment)

        pending = collections.deque(load(bound) for bound in bounds[:workers + 1])
        written = None
        for i, (first, last) in enumerate(bounds):
            inputs, kept, skipped = pending.popleft().result()
            if i + workers + 1 < len(bounds):
                pending.append(load(bounds[i + workers + 1]))
            outputs = [(view, engine(batch)) for view, batch in inputs] if len(kept) else []
            if written is not None:
                written.result()
            written = writers.submit(_write_rows, writer, split, kept, outputs, skipped)
            progress.update(last - first)
        if written is not None:
            written.result()


def _finished_part(path, metadata, samples):
    """True if `path` is an intact part of `samples` made with `metadata`; removes a bad one."""
    if not os.path.exists(path):
        return False
    try:
        info = cache.verify_cache(path)
        if info.fingerprint == metadata.fingerprint() and info.samples == samples:
            return True
    except cache.CacheError as error:
        logging.warning("Extracting %s again: %s", path, error)
    os.remove(path)
    return False


def _remove_temporaries(folder, prefix):
    """Removes temporary files an interrupted writer left in `folder`."""
    if os.path.isdir(folder):
        for name in os.listdir(folder):
            if name.startswith(prefix) and name.endswith(".tmp"):
                os.remove(os.path.join(folder, name))


def _tidy_parts_folders(path, fingerprint):
    """Removes the checkpoints of a finished cache; points out those of other settings.

    Checkpoints of an extraction with other settings (e.g. before a bad image
    was replaced) are kept, since that extraction could still be resumed.
    """
    folder, name = os.path.split(os.path.abspath(path))
    own = os.path.basename(cache.parts_folder(path, fingerprint))
    for entry in sorted(os.listdir(folder)):
        if entry == own:
            shutil.rmtree(os.path.join(folder, entry))
        elif cache.is_parts_folder(entry, path):
            logging.warning("Kept %s: checkpoints of an unfinished extraction of %s with other "
                            "settings. Delete it if you will not resume that extraction.",
                            os.path.join(folder, entry), name)


def _extract_plan(engine, spec, plan, input_size, batch_size, on_bad_image, checkpoint_every,
                  fidelity=None):
    """Extracts a plan's samples as checkpointed parts, then merges them into its file.

    Parts already finished by an interrupted run with the same settings are
    kept, so a run started again continues where the last one stopped. The
    file records `fidelity` (a dict of `cache.FIDELITY_ATTRS`).

    Returns:
        The `cache.CacheInfo` of the written file.
    """
    from tqdm import auto as tqdm  # pylint: disable=g-import-not-at-top

    split, metadata = plan.split, plan.metadata
    work = cache.parts_folder(plan.path, metadata.fingerprint())
    _remove_temporaries(os.path.dirname(os.path.abspath(plan.path)),
                        cache.working_prefix(plan.path))
    _remove_temporaries(work, ".")
    os.makedirs(work, exist_ok=True)
    feature_shape = tuple(engine.output_shape[1:])
    augment = None
    if metadata.augment_copies:
        augment = (augmentation.parse_transforms(metadata.augmentations), metadata.augment_copies,
                   metadata.seed)
    lo, hi, total = plan.samples
    ranges = _parts(lo, hi, checkpoint_every)
    parts = [cache.part_filename(work, start, stop) for start, stop in ranges]
    finished = [_finished_part(part, metadata, (start, stop, total))
                for part, (start, stop) in zip(parts, ranges)]
    done = sum(stop - start for (start, stop), kept in zip(ranges, finished) if kept)
    if done:
        logging.info("Resuming %s: %d of %d samples were extracted by an earlier run.",
                     plan.path, done, hi - lo)
    try:
        with tqdm.tqdm(total=hi - lo, unit="img", desc=f"{spec.name} {split.name}") as progress:
            for part, (start, stop), kept in zip(parts, ranges, finished):
                if kept:
                    progress.update(stop - start)
                else:
                    with cache.CacheWriter(part, metadata, split.class_names, feature_shape,
                                           samples=(start, stop, total),
                                           fidelity=fidelity) as writer:
                        _extract_samples(engine, spec, split, start, stop, input_size, batch_size,
                                         on_bad_image, writer, progress, augment)
                        writer.commit()
    except BaseException:
        # Finished parts stay for the next run to resume from; an empty folder does not.
        if not os.listdir(work):
            os.rmdir(work)
        raise
    info = cache.merge_parts(parts, plan.path, metadata, plan.samples, as_part=plan.shard,
                             fidelity=fidelity)
    _tidy_parts_folders(plan.path, metadata.fingerprint())
    if hi > lo and info.num_samples == 0:
        os.remove(plan.path)
        raise datasets.DatasetError(
            f"Every image of samples [{lo}, {hi}) of the {split.name} split failed to decode. "
            "Expected at least one readable image; check --dataset_dir and --dataset_format."
        )
    return info


def _parts(lo, hi, checkpoint_every):
    """Checkpoint ranges `[start, stop)` over `[lo, hi)`, aligned to multiples of `checkpoint_every`.

    Alignment to the split (not to `lo`) gives a shard the same parts, and so
    the same batches, as an unsharded run.
    """
    edges = sorted({lo, hi, *range((lo // checkpoint_every + 1) * checkpoint_every, hi,
                                   checkpoint_every)})
    return list(zip(edges[:-1], edges[1:])) or [(lo, hi)]


def shard_range(total, num_shards, shard_index, batch_size):
    """The `[start, stop)` samples of a shard: the split cut into `num_shards` nearly equal runs.

    Boundaries fall on multiples of `batch_size` where the split has a batch
    for every shard, so a shard's batches are those of an unsharded run; a
    smaller split is cut sample by sample (a shard may then be empty, when
    there are more shards than samples).

    Args:
        total: samples in the split.
        num_shards: how many shards.
        shard_index: this shard, in `[0, num_shards)`.
        batch_size: images per network call.

    Returns:
        `(start, stop)`.
    """
    unit = batch_size if total >= num_shards * batch_size else 1
    units = -(-total // unit)
    first = shard_index * units // num_shards
    last = (shard_index + 1) * units // num_shards
    return min(first * unit, total), min(last * unit, total)


@dataclasses.dataclass(frozen=True)
class _Plan:
    """What to write for one split: the file, and which of the split's samples go in it."""

    split: datasets.Split
    metadata: cache.CacheMetadata
    path: str
    samples: tuple
    existing: Optional[cache.CacheInfo]
    shard: bool = False  # A shard file is always a part, even one that holds the whole split.


def _check_options(batch_size, per_class, on_bad_image, num_shards, shard_index, merge,
                   checkpoint_every):
    for name, value in (("batch_size", batch_size), ("num_shards", num_shards),
                        ("checkpoint_every", checkpoint_every)):
        checks.check_scalar(value, name, 1)
    if per_class is not None:
        checks.check_scalar(per_class, "per_class", 1, qualifier="(or unset for all)")
    checks.check_choice(on_bad_image, "on_bad_image", BAD_IMAGE_POLICIES)
    if not 0 <= shard_index < num_shards:
        raise ValueError(f"Expected 0 <= shard_index < num_shards. Received: "
                         f"shard_index={shard_index}, num_shards={num_shards}.")
    if merge and num_shards < 2:
        raise ValueError(f"Expected --num_shards >= 2 with --merge (the number of shards to merge). "
                         f"Received: num_shards={num_shards}.")


def _plan(split, metadata, path, overwrite, num_shards, shard_index, batch_size):
    total = len(split)
    if num_shards > 1:
        path = cache.shard_filename(path, num_shards, shard_index)
        samples = (*shard_range(total, num_shards, shard_index, batch_size), total)
    else:
        samples = (0, total, total)
    return _Plan(split, metadata, path, samples, _check_existing(path, metadata, overwrite),
                 shard=num_shards > 1)


def _merge_shards(plan, num_shards):
    """Merges the shard files of `plan`'s cache into it; returns its `cache.CacheInfo`."""
    shards = [cache.shard_filename(plan.path, num_shards, i) for i in range(num_shards)]
    missing = [path for path in shards if not os.path.exists(path)]
    if missing:
        raise cache.CacheError(
            f"Expected {num_shards} shard files of {plan.path}. Missing: {', '.join(missing)}. "
            "Run those shards (the same command with --shard_index), then merge again."
        )
    return cache.merge_parts(shards, plan.path, plan.metadata, (0, len(plan.split), len(plan.split)))


def _run_shards_on_ray(arguments):
    """Extracts every shard as a Ray task; returns the number of shards.

    Without `num_shards`, there is one shard per GPU of the cluster, or per CPU
    where it has none (at least two).
    """
    with jobs.ray_session(arguments["ray_address"]) as (cpus, gpus):
        num_shards = arguments["num_shards"]
        if num_shards == 1:
            num_shards = max(2, gpus or cpus)
        calls = [{**arguments, "executor": "local", "num_shards": num_shards, "shard_index": index,
                  "merge": False} for index in range(num_shards)]
        jobs.run_on_ray(extract_features, calls, num_gpus=1 if gpus else 0)
    return num_shards


def _model_key(metadata):
    """A JSON-able description of everything that determines the network's outputs."""
    model_key = {field: getattr(metadata, field) for field in (
        "network", "weights", "weights_sha256", "layer", "pooling", "input_size", "library_versions")}
    model_key["seed"] = metadata.seed if metadata.weights == "none" else 0
    return model_key


def _model_builder(metadata, weights):
    spec = networks.get_network(metadata.network)

    def build_model():
        # Random weights are seeded: the same in a resumed run and in every shard.
        return networks.build_feature_model(spec, weights, metadata.pooling, metadata.layer or None,
                                            metadata.input_size, seed=metadata.seed)

    return build_model


def _build_engine(metadata, weights, device, selection=None):
    """Builds the engine that runs the network `metadata` describes.

    Reuses the engine `selection` (a `features.precision.Selection`) measured,
    if any; builds an int8 one with its calibration images.
    """
    engine = selection.engine if selection is not None else None
    if engine is None:
        engine = engines.create_engine(
            metadata.engine, metadata.precision, device, _model_builder(metadata, weights),
            _model_key(metadata), selection.calibration if selection is not None else None)
    logging.info("Running %s with %s in %s on %s.", metadata.network, engine.name,
                 engine.precision, device.description)
    return engine


def _image_sample(split, spec, size, count, seed):
    """A seeded sample of `count` images of `split`, as a `features.precision.Calibration`."""
    indices = precisions.sample_indices(len(split), count, seed)
    key = precisions.sample_key(dataset_digest(split), [split.ids[i] for i in indices],
                                spec.preprocessing, size)

    def load():
        images = datasets.decode_images(split.image, indices, split.ids, size, log=False).images
        return spec.preprocess_input(images.astype(np.float32))

    return precisions.Calibration(key, load, len(indices))


def _select_precision(requested, metadata, weights, device, splits, options):
    """Resolves `requested` by measurement (`features.precision.select`); logs why.

    Args:
        requested: a checked precision.
        metadata: the training split's `cache.CacheMetadata` (any precision).
        weights: the weights option.
        device: the `engines.Device`.
        splits: the dataset's splits.
        options: `(calibration_images, check_images, batch_size, views)`.

    Returns:
        A `features.precision.Selection`.
    """
    if not precisions.needs_samples(requested, metadata.engine, device):
        selection = precisions.select(requested, metadata.engine, device, None, None, None, None)
        logging.info("%s", selection.reason)
        return selection
    calibration_images, check_images, batch_size, views = options
    spec = networks.get_network(metadata.network)
    train, validation = splits["train"], splits["validation"]
    samples = precisions.Samples(
        check=_image_sample(validation if len(validation) else train, spec, metadata.input_size,
                            check_images, metadata.seed),
        calibration=_image_sample(train, spec, metadata.input_size, calibration_images,
                                  metadata.seed),
        num_images=len(train) * (1 + views) + len(validation), batch_size=batch_size)
    build_model = _model_builder(metadata, weights)

    def make_engine(precision, calibration):
        return engines.create_engine(metadata.engine, precision, device, build_model,
                                     _model_key(metadata), calibration)

    flags = engines.cpu_flags()
    key = {"model": _model_key(metadata), "engine": metadata.engine, "cpu": engines.cpu_name(),
           "flags": sorted(set(flags) & set(precisions.BF16_FLAGS + precisions.INT8_FLAGS)),
           "versions": engines.engine_versions()}
    selection = precisions.select(requested, metadata.engine, device, make_engine, samples, key,
                                  engines.model_store(), flags,
                                  nncf_available=engines.nncf_installed())
    logging.info("%s", selection.reason)
    return selection


@dataclasses.dataclass(frozen=True)
class ExtractionSettings:
    """Everything `extract_features` is asked to do; `check` validates it once.

    Attributes:
        network: a registry name or alias, e.g. `"vgg"` or `"mobilenet_v2"`.
        dataset_dir: dataset folder or file; None for scikit-learn's digits.
        dataset: dataset name for the file names; defaults to the folder name.
        output_dir: where the caches go.
        per_class: keep this many training examples per class (None: all).
        batch_size: images per network call; None picks one for the input
            size and device (`features.engines.auto_batch_size`).
        weights: `"imagenet"`, `"none"` (random, seeded by `seed`), or a path
            to a weights file.
        pooling: `"avg"`, `"max"` or `"none"`.
        layer: take this layer's output instead of the last block's.
        input_size: resize images to this side instead of the network's default.
        overwrite: replace caches made with other settings, or damaged ones.
        dataset_format: one of `pipeline.datasets.FORMATS`, or None to detect.
        validation_split: fraction held out when the dataset has no validation split.
        seed: seed of the per-class selection and the validation split.
        allow_pickle: allow loading pickle files (they can run code).
        on_bad_image: `"skip"` leaves out an image that cannot be decoded (it is
            listed in the cache's `skipped_filenames` and logged); `"fail"` stops.
        num_shards: split the work into this many shards (for many machines).
        shard_index: with `num_shards > 1`, the shard to extract, into its own
            `...-<index>-of-<num_shards>.h5` file.
        merge: with `num_shards > 1`, merge the shard files into the caches.
        checkpoint_every: samples per checkpoint.
        executor: `"local"` runs here; `"ray"` runs the shards as Ray tasks
            (one per CPU slot, or GPU where there are GPUs, unless `num_shards`
            is given) and merges them here. The output folder must be shared
            by every machine of the cluster.
        ray_address: the Ray cluster to use; None starts a local instance.
        engine: what runs the network: one of `features.engines.ENGINES`;
            `"auto"` picks the fastest for the device.
        precision: one of `features.engines.PRECISIONS`. `"auto"` measures,
            with OpenVINO on a CPU, float32 and the lower precisions the CPU
            runs natively (bfloat16, int8) on `check_images` validation images
            and picks the fastest whose features pass
            `features.precision.GATE`; it is float32 with other engines, on
            GPUs and on datasets too small for the measurement to pay. The
            cache records the precision and its fidelity to float32.
        augment_copies: augmented views of each training image to extract
            besides the image itself (validation images are never augmented).
        augmentations: the transforms of those views, a comma list of
            `pipeline.augment.TRANSFORMS`; seeded by `seed`, so a resumed or
            sharded run gets the same views.
        calibration_images: training images int8 quantization is calibrated
            on (a seeded sample).
        check_images: validation images the fidelity of a lower precision is
            measured on (a seeded sample).
    """

    network: str
    dataset_dir: Optional[str] = None
    dataset: Optional[str] = None
    output_dir: str = "."
    per_class: Optional[int] = None
    batch_size: Optional[int] = None
    weights: str = "imagenet"
    pooling: str = "avg"
    layer: Optional[str] = None
    input_size: Optional[int] = None
    overwrite: bool = False
    dataset_format: Optional[str] = None
    validation_split: float = 0.2
    seed: int = 0
    allow_pickle: bool = False
    on_bad_image: str = "skip"
    num_shards: int = 1
    shard_index: int = 0
    merge: bool = False
    checkpoint_every: int = 1024
    executor: str = "local"
    ray_address: Optional[str] = None
    engine: str = "auto"
    precision: str = "auto"
    augment_copies: int = 0
    augmentations: str = "flip,crop,color"
    calibration_images: int = precisions.CALIBRATION_IMAGES
    check_images: int = precisions.CHECK_IMAGES

    def check(self):
        """Validates every setting and resolves what depends on the device.

        Returns:
            A `_Resolved`.

        Raises:
            ValueError: the first setting out of range, with what it may be.
        """
        spec = networks.get_network(self.network)  # An empty or unknown name lists them all.
        _check_name("network", self.network)
        size = networks.resolve_input_size(spec, self.input_size)
        networks.check_pooling(self.pooling)
        _check_options(1 if self.batch_size is None else self.batch_size, self.per_class,
                       self.on_bad_image, self.num_shards, self.shard_index, self.merge,
                       self.checkpoint_every)
        checks.check_scalar(self.augment_copies, "augment_copies", 0)
        # Checked even without copies, so that a typo is not found only when copies are asked for.
        transforms = augmentation.parse_transforms(self.augmentations)
        if self.augment_copies and not transforms:
            raise ValueError(f"Expected --augmentations with --augment_copies="
                             f"{self.augment_copies}: the transforms that make each view. Received: none. Pass e.g. "
                             "--augmentations=flip,crop,color.")
        device = engines.detect_device()
        engine = engines.resolve_engine(self.engine, device)
        precision = engines.resolve_precision(self.precision, device, engine)
        for name in ("calibration_images", "check_images"):
            checks.check_scalar(getattr(self, name), name, 1)
        checks.check_choice(self.executor, "executor", jobs.EXECUTORS)
        files.check_writable_dir(self.output_dir, "--output_dir")
        dataset = self.dataset or default_dataset_name(self.dataset_dir)
        _check_name("dataset", dataset, None if self.dataset else self.dataset_dir)
        return _Resolved(spec, size, transforms if self.augment_copies else (), device, engine,
                         precision, self.batch_size or engines.auto_batch_size(size, device),
                         dataset, *networks.weights_identity(self.weights))


@dataclasses.dataclass(frozen=True)
class _Resolved:
    """What `ExtractionSettings.check` derived: the network, sizes and device choices."""

    spec: networks.NetworkSpec
    size: tuple
    transforms: tuple
    device: engines.Device
    engine: str
    precision: str
    batch_size: int
    dataset: str
    weights_id: str
    weights_sha256: str


def _network_metadata(settings, resolved, versions, **split_fields):
    """A `cache.CacheMetadata` of the network's settings, with `split_fields` for a split's own.

    Without `split_fields`, what the precision measurement keys its models by.
    """
    fields = dict(dataset_digest="", split="train", per_class=0, seed=settings.seed)
    fields.update(split_fields)
    return cache.CacheMetadata(
        network=resolved.spec.name, weights=resolved.weights_id,
        weights_sha256=resolved.weights_sha256, layer=settings.layer or "",
        pooling=settings.pooling, input_size=resolved.size,
        preprocessing=resolved.spec.preprocessing, dataset=resolved.dataset,
        library_versions=versions, engine=resolved.engine, **fields)


def _split_metadata(settings, resolved, split, name, precision, versions):
    """The `cache.CacheMetadata` of one split's cache."""
    train = name == "train"
    return _network_metadata(
        settings, resolved, versions, dataset_digest=dataset_digest(split), split=name,
        # Only the training split is cut to per_class. The seed counts where it chose the
        # samples, or the random weights.
        per_class=(settings.per_class or 0) if train else 0,
        seed=settings.seed if split.seeded or settings.weights == "none"
        or (settings.augment_copies and train) else 0,
        precision=precision, augmentations=",".join(resolved.transforms) if train else "",
        augment_copies=settings.augment_copies if train else 0)


def _make_plans(settings, resolved, splits, precision, versions):
    """One `_Plan` per split: its cache (or shard) file and the existing cache it may reuse."""
    plans = []
    for name in cache.SPLITS:
        split = splits[name]
        path = os.path.join(settings.output_dir, cache.cache_filename(
            file_network_name(settings.network, resolved.spec), resolved.dataset, name,
            settings.per_class, settings.augment_copies))
        sharded_here = settings.executor == "local" and not settings.merge
        metadata = _split_metadata(settings, resolved, split, name, precision, versions)
        plans.append(_plan(split, metadata, path, settings.overwrite or settings.merge,
                           settings.num_shards if sharded_here else 1, settings.shard_index,
                           resolved.batch_size))
    return plans


def _write_plans(plans, settings, resolved, selection, num_shards, merge):
    """Reuses, merges or extracts each plan's cache; returns the `ExtractionResult`s."""
    runner = None
    results = []
    for plan in plans:
        if plan.existing:
            logging.info("Reusing %s: same fingerprint %s.", plan.path,
                         plan.metadata.fingerprint()[:12])
            # A run killed between its merge and its clean-up left its checkpoints.
            _tidy_parts_folders(plan.path, plan.metadata.fingerprint())
            info, reused = plan.existing, True
        elif merge:
            info, reused = _merge_shards(plan, num_shards), False
        else:
            runner = runner or _build_engine(plan.metadata, settings.weights, resolved.device,
                                             selection)
            announce_cache_size(plan.path, plan.samples[1] - plan.samples[0],
                                plan.metadata.augment_copies, tuple(runner.output_shape[1:]))
            info, reused = _extract_plan(runner, resolved.spec, plan, resolved.size,
                                         resolved.batch_size, settings.on_bad_image,
                                         settings.checkpoint_every,
                                         selection.fidelity.to_attrs()), False
        if not reused:
            logging.info("Wrote %s: %d rows, %d images skipped.", plan.path, info.num_samples,
                         info.num_skipped)
        results.append(ExtractionResult(plan.split.name, plan.path, info.num_samples,
                                        info.num_skipped, reused))
    return results


def extract_features(network, **options):
    """Extracts and caches the bottleneck features of a dataset's two splits.

    Writes `<network>_<dataset>[_<per_class>]_bottleneck_features_train.h5` and
    `<network>_<dataset>_bottleneck_features_validation.h5` to `output_dir`. A
    cache already there with the same fingerprint is reused; one with another
    fingerprint is replaced only when `overwrite` is True.

    Progress is checkpointed every `checkpoint_every` samples: a run that was
    killed continues, when started again with the same arguments, from its last
    finished checkpoint, and writes the same cache an uninterrupted run would.

    Args:
        network: a registry name or alias, e.g. `"vgg"` or `"mobilenet_v2"`.
        **options: the other fields of `ExtractionSettings` (each documented
            there), e.g. `dataset_dir`, `output_dir`, `per_class`, `weights`.

    Returns:
        A list of `ExtractionResult`, train first.

    Raises:
        ValueError: bad arguments, dataset or cache (`DatasetError`,
            `NetworkError` and `CacheError` are `ValueError`s).
        TypeError: an option that `ExtractionSettings` does not have.
    """
    settings = ExtractionSettings(network, **options)
    resolved = settings.check()
    splits = datasets.prepare_splits(
        settings.dataset_dir, dataset_format=settings.dataset_format, per_class=settings.per_class,
        validation_split=settings.validation_split, seed=settings.seed,
        allow_pickle=settings.allow_pickle)
    versions = library_versions()
    selection = _select_precision(
        resolved.precision, _network_metadata(settings, resolved, versions),
        settings.weights, resolved.device, splits,
        (settings.calibration_images, settings.check_images, resolved.batch_size,
         settings.augment_copies))
    # Shards run on Ray get the resolved precision, so that they all extract in the same one.
    settings = dataclasses.replace(settings, precision=selection.precision)
    plans = _make_plans(settings, resolved, splits, selection.precision, versions)
    num_shards, merge = settings.num_shards, settings.merge
    if settings.executor == "ray" and not all(plan.existing for plan in plans):
        num_shards, merge = _run_shards_on_ray(dataclasses.asdict(settings)), True
        plans = [_plan(plan.split, plan.metadata, plan.path, True, 1, 0, resolved.batch_size)
                 for plan in plans]
    return _write_plans(plans, settings, resolved, selection, num_shards, merge)
