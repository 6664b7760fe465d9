"""Part 5 of the fault suite: corrupt caches.

A copy of the reference training cache is damaged four ways: truncated to half, 64 bytes inverted in
the middle of the file, one bit flipped in the feature data, the `network` attribute deleted.
`read_cache` must raise `CacheError`, and `feature_extraction` (with the reference validation cache)
must exit 1 with one message, write nothing and leave both files as they were. Flipped bytes that no
reader ever gets, such as unused chunk space, count as harmless when every value reads back
identical.
"""

import os
import shutil

import h5py
import numpy as np

from benchmarks.faults import common
from benchmarks.faults import readers
from tests import bad_inputs


def truncate_half(path):
    os.truncate(path, os.path.getsize(path) // 2)
    return f"truncated to {os.path.getsize(path)} bytes"


def flip_middle_bytes(path):
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.seek(size // 2 - 32)
        data = bytearray(f.read(64))
        f.seek(size // 2 - 32)
        f.write(bytes(b ^ 0xFF for b in data))
    return f"64 bytes at offset {size // 2 - 32} inverted"


def flip_feature_bit(path):
    with h5py.File(path, "r") as f:
        features = f["features"]
        offset = features.id.get_chunk_info(0).byte_offset
        used = features.shape[0] * int(np.prod(features.shape[1:])) * 4
    position = offset + (used // 2 // 4) * 4 + 2  # a float's third byte: its exponent's lowest bit
    with open(path, "r+b") as f:
        f.seek(position)
        byte = f.read(1)[0]
        f.seek(position)
        f.write(bytes([byte ^ 0x80]))
    return f"1 bit at offset {position} (mid feature data) flipped"


def delete_attribute(path):
    with h5py.File(path, "r+") as f:
        del f.attrs["network"]
    return "attribute `network` deleted"


CORRUPTIONS = (("truncated cache", truncate_half), ("bytes flipped mid-file", flip_middle_bytes),
               ("bit flipped in features", flip_feature_bit), ("attribute deleted", delete_attribute))


def refused_by_training(setup, training_file, validation_file, name):
    """feature_extraction on a pair: must exit 1 with one message, write nothing and leave both
    files as they were (a changed one is reported as destroyed in the message)."""
    output = setup.path("runs", name)
    before = bad_inputs.snapshot(training_file, validation_file)
    completed = common.run_command([setup.tool("feature_extraction"), f"--training_file={training_file}",
                                    f"--validation_file={validation_file}", f"--output_dir={output}",
                                    "--epochs=1"], setup.workdir, setup.timeout)
    ok, message = common.clean_error(completed, "feature_extraction")
    if os.path.exists(output):
        ok, message = False, f"{message} (and {output} was written)"
    destroyed = bad_inputs.destroyed(before)
    if destroyed:
        ok, message = False, f"{message} (and destroyed {', '.join(destroyed)})"
    return ok, message


def judge_corruption(setup, ref, name, path):
    """`(ok, read_cache column, feature_extraction column, message)` for one damaged cache."""
    kind, value = readers.read_outcome(path)
    if kind == "complete":
        # feature_extraction reads through read_cache: it would train on this file. Not run.
        same = value == ref.digests["train"]  # flipped bytes no reader gets (chunk padding) change nothing
        read = "accepted, same data" if same else "ACCEPTED, DIFFERENT DATA"
        message = ("harmless: the flipped bytes are unused chunk space; every value reads back "
                   "identical" if same else "silent corruption: read_cache returns altered "
                   "features without an error, and feature_extraction would train on them")
        return same, read, "not run (reads via read_cache)", message
    cli_ok, cli_message = refused_by_training(setup, path, ref.paths["validation"], name.replace(" ", "_"))
    cli = "exit 1, one line" if cli_ok else "NO"
    return kind == "CacheError" and cli_ok, kind, cli, f"read_cache -> {value} | feature_extraction -> {cli_message}"


def corrupt_cache_checks(setup, ref):
    """Part 5: every corruption of `CORRUPTIONS` on a copy of the reference training cache."""
    rows, checks, notes = [], [], []
    folder = setup.path("corrupt")
    os.makedirs(folder, exist_ok=True)
    for name, corrupt in CORRUPTIONS:
        path = os.path.join(folder, name.replace(" ", "_") + "_train.h5")
        shutil.copy2(ref.paths["train"], path)
        how = corrupt(path)
        ok, read, cli, message = judge_corruption(setup, ref, name, path)
        checks.append(common.Check("corrupt", name, ok, message))
        rows.append((name, how, read, cli, common.verdict(ok)))
        notes.append(f"{name}: {common.shorten(message, 330)}")
    common.print_table("5. corrupt caches (read_cache, then feature_extraction with the reference validation)",
                       ("corruption", "how", "read_cache", "feature_extraction", "result"), rows, notes)
    return checks
