"""Writing outputs so that a reader sees the old one or the new one, and never a user's file lost.

The one rule every command follows: an existing path is deleted or replaced
only when it is this tool's own output. A folder this tool writes holds the
marker file `MARKER`; a folder without it (or a file where a folder goes, a
folder holding one of the command's inputs, the current folder, the home
folder, the root) is refused with one message naming the path and the way
out, before any work is done. A file output is replaced only when the caller
allows it (`--overwrite`), is never one of the inputs, and is recognizably of
the kind the command writes.
"""

import contextlib
import json
import os
import shutil
import tempfile
import zipfile

# Written into every folder this tool writes; its presence is what allows replacing the folder.
MARKER = ".bottleneck_cache.json"
# Folders written before the marker existed, recognized by what only this tool puts there:
# a head folder (feature_extraction) or a fine-tuned model folder (fine_tune).
_LEGACY_SIGNATURES = (("head_config.json",), ("model.keras", "metrics.json", "history.csv"))
# What a batch root held before the marker existed, besides its job folders.
_LEGACY_BATCH_FILES = frozenset({"results.csv", "results.md", "results.png"})


class OutputError(ValueError):
    """An output path that a command must not replace or cannot write."""


def _show(path):
    return repr(os.fspath(path))


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _protected_reason(real):
    """Why `real` (a resolved path) may never be an output folder, or None."""
    if real == os.path.dirname(real):
        return "the root folder"
    if real == os.path.realpath(os.path.expanduser("~")):
        return "your home folder"
    cwd = os.path.realpath(os.getcwd())
    if real == cwd:
        return "the current folder"
    if cwd.startswith(real + os.sep):
        return "a folder that holds the current folder"
    return None


def _contains(folder, path):
    """True if `path` is `folder` or lies inside it (both resolved)."""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _held_input(real, inputs):
    for item in inputs:
        if item is not None and _contains(real, os.path.realpath(item)):
            return item
    return None


def _is_legacy_batch_root(path, names):
    return all(name in _LEGACY_BATCH_FILES or name.startswith(".")
               or os.path.isfile(os.path.join(path, name, "head_config.json"))
               or os.path.isfile(os.path.join(path, name, MARKER)) for name in names)


def is_own_folder(path):
    """True if `path` is a folder this tool wrote (its marker, or an older version's files)."""
    if os.path.isfile(os.path.join(path, MARKER)):
        return True
    if any(all(os.path.isfile(os.path.join(path, name)) for name in signature)
           for signature in _LEGACY_SIGNATURES):
        return True
    names = os.listdir(path)
    return bool(names) and _is_legacy_batch_root(path, names)


def _refuse(flag, path, expected, received, fix):
    return OutputError(f"Expected {flag} to be {expected}. Received: {_show(path)}, {received}. {fix}")


def check_output_dir(path, flag="--output_dir", inputs=(), overwrite=None):
    """Refuses an output folder that writing to (and replacing) could destroy a user's files.

    Call it before any expensive work; `atomic_directory` calls it again.

    Args:
        path: the folder a command will write, replacing what is there.
        flag: the flag that named it, for the message.
        inputs: paths the command reads; none may lie inside `path`.
        overwrite: None if the command replaces its own earlier output freely;
            False if it must refuse and ask for `--overwrite`; True if the user
            gave `--overwrite`.

    Raises:
        OutputError: `path` is a file or a symbolic link, the current, home or
            root folder (or holds the current folder), holds one of `inputs`,
            is a non-empty folder this tool did not write, or exists while
            `overwrite` is False.
    """
    real = os.path.realpath(path)
    new_folder = "Pass a new folder (it is created), or one this tool wrote before"
    if os.path.islink(path):
        raise _refuse(flag, path, "a folder", "which is a symbolic link", f"{new_folder}.")
    if os.path.lexists(path) and not os.path.isdir(path):
        raise _refuse(flag, path, "a folder", "which is a file", f"{new_folder}.")
    reason = _protected_reason(real)
    if reason:
        raise _refuse(flag, path, "a folder of its own", f"which is {reason}: writing the output "
                      "there would replace everything in it", f"{new_folder}, e.g. runs/my_run.")
    held = _held_input(real, inputs)
    if held is not None:
        raise _refuse(flag, path, "a folder apart from the inputs", f"which holds the input "
                      f"{_show(held)}: replacing it would delete that input",
                      f"{new_folder}, outside the inputs' folder.")
    if not os.path.isdir(path):
        return
    names = sorted(os.listdir(path))
    if names and not is_own_folder(path):
        shown = ", ".join(names[:3]) + (", …" if len(names) > 3 else "")
        raise _refuse(flag, path, "a new or empty folder, or one this tool wrote",
                      f"a folder of other files ({shown}) that replacing it would delete",
                      f"{new_folder}, or move those files away.")
    if overwrite is False:
        raise _refuse(flag, path, "a new folder", "which exists",
                      f"Pass --overwrite to replace it (an earlier output of this tool), or choose "
                      f"another {flag}.")


def write_json(path, payload):
    """Writes `payload` as indented, key-sorted JSON (the metrics and configs of output folders)."""
    with open(path, "w", encoding="utf-8") as f:
        json.dump(payload, f, indent=2, sort_keys=True)
        f.write("\n")


def write_marker(folder, command):
    """Writes the marker that lets a later run of this tool replace `folder`."""
    with open(os.path.join(folder, MARKER), "w", encoding="utf-8") as f:
        json.dump({"written_by": "bottleneck-cache", "command": command}, f)
        f.write("\n")


@contextlib.contextmanager
def atomic_directory(path, flag="--output_dir", inputs=(), overwrite=None, command=None):
    """Yields a temporary folder that replaces `path` when the block succeeds.

    `path` is first checked by `check_output_dir` (so a user's folder is never
    replaced). The temporary folder sits beside `path` (same file system, so
    the final rename is atomic). If the block raises, it is removed and `path`
    is left as it was; if it succeeds, the marker is written into it and the
    older `path` (checked again, as it may have changed meanwhile) is swapped
    out and removed.

    Args:
        path: the folder to write.
        flag, inputs, overwrite: see `check_output_dir`.
        command: the command's name, recorded in the marker.

    Yields:
        The temporary folder to write into.

    Raises:
        OutputError: see `check_output_dir`.
    """
    check_output_dir(path, flag, inputs, overwrite)
    path = os.path.abspath(path)
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=parent)
    os.chmod(staging, 0o777 & ~_umask())  # mkdtemp makes it 0700; give it a plain makedirs' mode.
    try:
        yield staging
        write_marker(staging, command or "bottleneck-cache")
        check_output_dir(path, flag, inputs, overwrite)
        retired = None
        if os.path.exists(path):
            retired = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.", suffix=".old", dir=parent)
            os.replace(path, os.path.join(retired, "previous"))
        os.replace(staging, path)
        if retired:
            shutil.rmtree(retired, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def claim_directory(path, flag="--output_dir", inputs=(), command=None):
    """Makes (or adopts) a folder that this tool writes into without replacing it.

    For a root that collects several outputs (e.g. a batch's job folders and
    its `results.*`): the folder must pass `check_output_dir`; it is created
    if needed and marked as this tool's.

    Raises:
        OutputError: see `check_output_dir`.
    """
    check_output_dir(path, flag, inputs, overwrite=None)
    os.makedirs(path, exist_ok=True)
    if not os.path.exists(os.path.join(path, MARKER)):
        write_marker(path, command or "bottleneck-cache")


def is_keras_archive(path):
    """True if `path` is a `.keras` file (a zip archive holding `config.json`)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return "config.json" in archive.namelist()
    except (OSError, zipfile.BadZipFile):
        return False


def check_output_file(path, flag="--output", inputs=(), overwrite=False, recognize=None):
    """Refuses an output file whose writing could destroy a user's file.

    Args:
        path: the file a command will write.
        flag: the flag that named it, for the message.
        inputs: paths the command reads; `path` may be none of them.
        overwrite: whether an existing file may be replaced (`--overwrite`).
        recognize: for an existing file, a predicate that is True when it is
            of the kind this command writes (e.g. `is_keras_archive`).

    Raises:
        OutputError: `path` is a folder or one of `inputs`, or exists while
            `overwrite` is False or `recognize` says it is not this kind.
    """
    real = os.path.realpath(path)
    if os.path.isdir(path):
        raise _refuse(flag, path, "a file", "which is a folder", "Pass a file path.")
    if any(item is not None and os.path.realpath(item) == real for item in inputs):
        raise _refuse(flag, path, "a file apart from the inputs", "which is one of the inputs",
                      "Pass another path: inputs are never written to.")
    if not os.path.lexists(path):
        return
    if not overwrite:
        raise _refuse(flag, path, "a new file", "which exists",
                      "Pass --overwrite to replace it, or choose another path.")
    if recognize is not None and not recognize(path):
        raise _refuse(flag, path, "a file this command wrote", "which is not one (its contents "
                      "are of another kind), so --overwrite does not apply to it",
                      "Choose another path, or move that file away.")


@contextlib.contextmanager
def atomic_file(path, flag="--output", inputs=(), overwrite=False, recognize=None):
    """Yields a temporary path that replaces `path` when the block succeeds.

    `path` is first checked by `check_output_file`. The temporary file sits
    beside it and ends with the same suffix (Keras chooses the format by it);
    on failure it is removed and `path` is left as it was.

    Args:
        path, flag, inputs, overwrite, recognize: see `check_output_file`.

    Yields:
        The temporary path to write.

    Raises:
        OutputError: see `check_output_file`.
    """
    check_output_file(path, flag, inputs, overwrite, recognize)
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    name = os.path.basename(path)
    suffix = os.path.splitext(name)[1]
    fd, temporary = tempfile.mkstemp(prefix=f".{name}.", suffix=f".tmp{suffix}", dir=parent)
    os.close(fd)
    os.remove(temporary)  # Writers such as Keras' save expect to create the file themselves.
    try:
        yield temporary
        os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, path)
    finally:
        if os.path.lexists(temporary):
            os.remove(temporary)


def check_writable_dir(path, flag="--output_dir"):
    """Refuses a folder this process cannot create files in; creates nothing.

    A folder that does not exist yet is checked at its nearest existing
    parent, where it will be created.

    Raises:
        OutputError: `path` (or a parent) is a file, or cannot be written.
    """
    if os.path.lexists(path) and not os.path.isdir(path):
        raise _refuse(flag, path, "a folder", "which is a file",
                      "Pass a folder path (it is created if needed).")
    existing = os.path.abspath(path)
    while not os.path.isdir(existing):
        if os.path.lexists(existing):
            raise _refuse(flag, path, "a folder", f"which lies under {_show(existing)}, a file",
                          "Pass a folder path (it is created if needed).")
        existing = os.path.dirname(existing)
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        raise _refuse(flag, path, "a folder this user can write", f"where {_show(existing)} cannot "
                      f"be written ({error.strerror or error})", "Pass a writable folder, or fix "
                      "its permissions.") from None
