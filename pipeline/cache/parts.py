"""Part files (checkpoints and shards) and `merge_parts`, which joins them into one cache.

A part is a cache file with the root attribute `part_samples` =
`(start, stop, total)`: the samples of its split that it holds. Extraction
writes checkpoint parts (`schema.part_filename` in `schema.parts_folder`) and
shard files (`schema.shard_filename`); `merge_parts` checks that parts share
the settings and tile a range of samples exactly once, then copies their rows,
in sample order, into one file.
"""

from bottleneck_cache.pipeline.cache import reader
from bottleneck_cache.pipeline.cache import schema
from bottleneck_cache.pipeline.cache import writer as writers


def read_part_header(path):
    """Reads and checks a part file's header: `(metadata, (start, stop, total))`.

    Raises:
        CacheError: the file is not a valid cache, or not a part.
    """
    with reader.open_cache(path) as f:
        return reader.check_header(f, path), reader.part_samples(f, path)


def _check_coverage(ranges, start, stop, total):
    """Raises `CacheError` unless `ranges` tile `[start, stop)` of `total` samples exactly.

    Args:
        ranges: `((first, last, size), path)` of each part, sorted.
        start, stop: the samples the parts must cover.
        total: the samples of the split.
    """
    position = start
    for (first, last, size), path in ranges:
        if size != total:
            raise schema.CacheError(
                f"{path} is a part of a split of {size} samples. Expected parts of one split of "
                f"{total} samples; it comes from another extraction."
            )
        if first != position:
            problem = (f"samples [{position}, {first}) are missing" if first > position else
                       f"samples [{first}, {min(position, last)}) appear twice")
            raise schema.CacheError(
                f"Expected parts covering samples [{start}, {stop}) exactly once. Received: "
                f"{path} starts at sample {first}, so {problem}. Add the missing part (run that "
                "shard again) or remove the duplicate."
            )
        position = last
    if position != stop:
        raise schema.CacheError(
            f"Expected parts covering samples [{start}, {stop}) exactly once. Received: parts end "
            f"at sample {position}, so samples [{position}, {stop}) are missing. Run the missing "
            "shard, then merge again."
        )


def _sorted_parts(part_paths, metadata):
    """Reads each part's header; returns `((start, stop, total), path)` in sample order.

    Raises:
        CacheError: a part is invalid, not a part, or made with other settings.
    """
    ranges = []
    for part in part_paths:
        part_metadata, part_range = read_part_header(part)
        if part_metadata.fingerprint() != metadata.fingerprint():
            differences = "; ".join(part_metadata.differences(metadata))
            raise schema.CacheError(
                f"{part} was made with other settings ({differences} (part != expected)). "
                "Expected every part from the same extract_features flags."
            )
        ranges.append((part_range, part))
    return sorted(ranges)


def _layout(part):
    """A part's `(class_names, feature_shape)` and its `FIDELITY_ATTRS`, checked."""
    with reader.open_cache(part) as f:
        reader.check_header(f, part)
        _, _, class_names, _, _ = reader.read_rows(f, part)
        return (class_names, f["features"].shape[1:]), reader.fidelity_attrs(f)


def _copy_part(part, writer, layout, first):
    """Appends every row and skipped sample of `part` to `writer`, checking them on the way.

    Args:
        part: a part file.
        writer: the `CacheWriter` of the merged file.
        layout: `(class_names, feature_shape)` every part must have.
        first: the first part's path, for messages.

    Raises:
        CacheError: the part is invalid or has another layout.
    """
    with reader.open_cache(part) as f:
        reader.check_header(f, part)
        labels, filenames, names, skipped, views = reader.read_rows(f, part)
        if (names, f["features"].shape[1:]) != layout:
            raise reader.corrupt(part, f"the class names and feature shape of {first}")
        for offset, block in reader.feature_blocks(f["features"], filenames, part):
            end = offset + len(block)
            writer.append(block, labels[offset:end], filenames[offset:end], views[offset:end])
        if skipped:
            writer.skip(*zip(*skipped))


def merge_parts(part_paths, path, metadata, samples, as_part=False, fidelity=None):
    """Concatenates part files, in sample order, into one cache file, atomically.

    Args:
        part_paths: finished part files, in any order.
        path: the cache to write (itself a part when `samples` is not the whole split).
        metadata: the settings every part must have been made with.
        samples: `(start, stop, total)`: the range the parts must tile, without
            gaps or overlaps.
        as_part: write a part even when `samples` is the whole split (a shard
            file, which `--merge` expects to be a part).
        fidelity: a dict of `FIDELITY_ATTRS` for the file; None copies the
            first part's.

    Returns:
        A `CacheInfo` of the written file.

    Raises:
        CacheError: a part is invalid, made with other settings, or the parts
            leave a gap, overlap, or belong to a split of another size.
    """
    ranges = _sorted_parts(part_paths, metadata)
    start, stop, total = samples
    _check_coverage(ranges, start, stop, total)
    if not ranges:
        raise schema.CacheError(f"Expected at least one part to merge into {path}. Received: none.")
    first = ranges[0][1]
    layout, first_fidelity = _layout(first)
    whole = (start, stop) == (0, total) and not as_part
    with writers.CacheWriter(path, metadata, *layout, samples=None if whole else samples,
                             fidelity=first_fidelity if fidelity is None else fidelity) as writer:
        for _, part in ranges:
            _copy_part(part, writer, layout, first)
        writer.commit()
    return schema.CacheInfo(metadata, metadata.fingerprint(), writer.num_rows, writer.num_skipped)
