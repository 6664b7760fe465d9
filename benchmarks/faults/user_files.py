"""Part 7 of the fault suite: issue 10's bad inputs and output folders, and the user's files.

Every case runs a console script as a subprocess, the way a user would, after a snapshot (size,
mtime, SHA-256) of every user file it could touch: its inputs and whatever was already at its
output location. A file changed or removed afterwards counts as destroyed. Two groups:

* bad inputs (`tests/bad_inputs.py`, shared with `tests/test_bad_inputs.py`): dangling links and
  link loops among the images (skipped and listed, or one message with --on_bad_image=fail),
  non-UTF-8 names, a folder name that is no dataset name, one class, a class too small for both
  splits, training/ + validation/, val/ beside extra/, a stray top-level folder, train/ with
  training/, bad --augmentations without copies, float .npz values outside 0..255 or NaN, an
  empty --network=; plus a cache estimated above 1 GiB, whose size must be printed before it is
  written (the run is interrupted once it is).
* output folders: feature_extraction --output_dir = the caches' folder, `.`, an existing file, a
  folder of unrelated files; export_model --saved_model_dir = a folder of user files, --output =
  an existing file without --overwrite; predict --dump_dir = a file; extract_features
  --output_dir = a file, a read-only folder (as root: run as uid 65534 with setpriv). Each must
  exit 1 with one `<command>: error: ...` line naming the user's path, and touch nothing.

`checks(setup)` runs both groups; the helpers (subprocesses, tables, `Check`) come from
`benchmarks/faults/common.py`.
"""

import os
import re
import shutil
import signal
import subprocess
import time

from benchmarks.faults import common
from bottleneck_cache.pipeline import cache
from tests import bad_inputs

LARGE_CACHE_FLAGS = ("--network=vgg16", "--weights=none", "--input_size=900", "--batch_size=2",
                     "--layer=block1_conv1", "--pooling=none")
ANNOUNCED = re.compile(r"Writing a cache of about (\d+\.\d) GiB to (\S+)")


def slug(name):
    return re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_")


def entries(path):
    """What is at `path`: a folder's entries (recursively), 'file', or 'nothing'."""
    if os.path.isdir(path):
        return sorted(os.path.relpath(os.path.join(d, n), path) for d, subdirs, names in os.walk(path)
                      for n in subdirs + names)
    return "file" if os.path.exists(path) else "nothing"


def guarded_run(setup, command, protect, watch=(), cwd=None, env=None, prefix=()):
    """Runs `command`; returns (completed, destroyed user files, watched paths whose content changed)."""
    before = bad_inputs.snapshot(*protect)
    listed = {path: entries(path) for path in watch}
    completed = common.run_command(command, cwd or setup.workdir, setup.timeout, env=env, prefix=prefix)
    changed = [path for path in watch if entries(path) != listed[path]]
    return completed, bad_inputs.destroyed(before), changed


def judge_refusal(completed, command_name, destroyed, changed, match=None, names=()):
    """(ok, message): exit 1, one error line (matching `match`, naming one of `names`), nothing touched."""
    ok, message = common.clean_error(completed, command_name)
    problems = []
    if match and not re.search(match, message):
        problems.append("unexpected message")
    if names and not any(name in message for name in names):
        problems.append(f"does not name {' or '.join(names)}")
    if ".parts" in message:
        problems.append("names an internal .parts path")
    if destroyed:
        problems.append(f"destroyed {len(destroyed)} user file(s): {', '.join(destroyed[:3])}")
    if changed:
        problems.append(f"wrote into {', '.join(changed)}")
    if problems:
        ok = False
        message = f"{'; '.join(problems)}: {message}"
    return ok, message


# ------------------------------------------------------------------------------------------------
# Bad inputs.


def extract_command(setup, dataset, output, flags=()):
    """The suite's extraction (`common.BASE_FLAGS`), with `flags` replacing those of the same name."""
    names = {flag.split("=", 1)[0] for flag in flags}
    base = [flag for flag in common.BASE_FLAGS if flag.split("=", 1)[0] not in names]
    return [setup.tool("extract_features"), *base, f"--dataset_dir={dataset}", f"--output_dir={output}",
            *flags]


def judge_input(case, completed, output, destroyed):
    """(outcome, ok, message) of one `tests.bad_inputs.Case` run through extract_features."""
    if case.outcome == "refused":
        ok, message = judge_refusal(completed, "extract_features", destroyed,
                                    [output] if entries(output) not in ("nothing", []) else [], case.match)
        return "refused" if completed.returncode else "accepted", ok, message
    if completed.returncode != 0:
        return "failed", False, (common.visible_lines(completed.stderr) or ["<no stderr>"])[-1]
    train = cache.read_cache(os.path.join(output, next(n for n in os.listdir(output) if n.endswith("_train.h5"))))
    problems, stderr = [], "\n".join(common.visible_lines(completed.stderr))
    if case.class_names and tuple(train.class_names) != case.class_names:
        problems.append(f"classes {list(train.class_names)}")
    if case.outcome == "skipped":
        skipped = dict(train.skipped)
        message = skipped.get(case.skipped, "")
        if list(skipped) != [case.skipped] or not re.search(case.match, message):
            problems.append(f"skipped {list(skipped)}")
        if f"Skipped {case.skipped}" not in stderr:
            problems.append("not logged")
    else:
        found = re.search(case.match, stderr) if case.match else None
        message = found.group(0) if found else ""
        if case.match and not found:
            problems.append("no warning")
        if train.skipped:
            problems.append(f"skipped {train.skipped}")
    if destroyed:
        problems.append(f"destroyed {len(destroyed)} user file(s)")
    outcome = f"{case.outcome}, {len(train.filenames)} rows"
    return outcome, not problems, "; ".join(problems + [message]) if problems else message


def input_checks(setup):
    rows, checks = [], []
    for case in bad_inputs.CASES:
        folder = setup.path("issue10_inputs", slug(case.name))
        dataset = case.build(folder)
        output = os.path.join(folder, "out")
        completed, destroyed, _ = guarded_run(setup, extract_command(setup, dataset, output, case.flags),
                                              [folder])
        outcome, ok, message = judge_input(case, completed, output, destroyed)
        checks.append(common.Check("bad input", case.name, ok, message, destroyed=len(destroyed)))
        rows.append((case.name, case.outcome, outcome, common.shorten(message, 100), common.verdict(ok)))
    checks.append(large_cache_check(setup))
    rows.append((checks[-1].name, "size printed first", "", common.shorten(checks[-1].detail, 100),
                 common.verdict(checks[-1].ok)))
    common.print_table("7a. issue 10: bad inputs (extract_features)",
                       ("input", "expected", "outcome", "message / reason / warning", "result"), rows,
                       [f"{c.name}: {common.shorten(c.detail, 400)}" for c in checks if not c.ok])
    return checks


def large_cache_check(setup):
    """A cache of ~1.2 GiB (VGG16 block1_conv1 at 900 px, no pooling): its size is printed first.

    The run is interrupted (SIGINT) as soon as the size is printed, so nothing that large is written.
    """
    folder = setup.path("issue10_large")
    dataset = bad_inputs.ordinary(folder)
    output = os.path.join(folder, "out")
    before = bad_inputs.snapshot(dataset)
    command = [setup.tool("extract_features"), *LARGE_CACHE_FLAGS, f"--dataset_dir={dataset}",
               f"--output_dir={output}"]
    process = subprocess.Popen(command, cwd=setup.workdir, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True, errors="replace")
    line, written_first, deadline = "", False, time.monotonic() + setup.timeout
    try:
        for raw in process.stderr:
            for segment in raw.split("\r"):
                match = ANNOUNCED.search(segment)
                if match:
                    line = segment.strip()
                    written_first = os.path.exists(match.group(2))
                    break
            if line or time.monotonic() > deadline:
                break
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stderr.close()
    destroyed = bad_inputs.destroyed(before)
    shutil.rmtree(output, ignore_errors=True)
    ok = bool(line) and not written_first and not destroyed
    detail = line or f"no size printed (exit {process.returncode})"
    if written_first:
        detail = f"the cache existed before its size was printed: {detail}"
    return common.Check("bad input", "cache estimated above 1 GiB", ok, detail, destroyed=len(destroyed))


# ------------------------------------------------------------------------------------------------
# Output folders.


def user_folder(path, files=("notes.txt", "sub/data.csv")):
    """A folder of the user's own files; returns `path`."""
    for name in files:
        full = os.path.join(path, name)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "w") as f:
            f.write(f"the user's {name}\n")
    return path


def user_file(path, text="the user's notes\n"):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    return path


def prepare_head(setup, root):
    """Caches of a tiny dataset in `root/caches` and a head trained on them in `root/head`."""
    dataset = bad_inputs.ordinary(os.path.join(root, "data"))
    caches = os.path.join(root, "caches")
    completed = common.run_command(extract_command(setup, dataset, caches), setup.workdir, setup.timeout)
    if completed.returncode:
        raise RuntimeError(f"extract_features for the output-folder cases failed:\n{completed.stderr}")
    paths = common.target_paths(caches, "ordinary")
    head = os.path.join(root, "head")
    completed = common.run_command([setup.tool("feature_extraction"), f"--training_file={paths['train']}",
                                f"--validation_file={paths['validation']}", f"--output_dir={head}",
                                "--epochs=1"], setup.workdir, setup.timeout)
    if completed.returncode:
        raise RuntimeError(f"feature_extraction for the output-folder cases failed:\n{completed.stderr}")
    return dataset, caches, paths, head


def output_cases(setup, root):
    """(name, command, cwd, protect, watch, path the message must name, env, prefix) of each case."""
    dataset, caches, paths, head = prepare_head(setup, root)
    image = os.path.join(dataset, "val", "cat", "cat_0.jpg")
    train_cmd = [setup.tool("feature_extraction"), f"--training_file={paths['train']}",
                 f"--validation_file={paths['validation']}", "--epochs=1"]
    notes = user_file(os.path.join(root, "user", "notes.txt"))
    mydir = user_folder(os.path.join(root, "user", "mydir"))
    mine = user_folder(os.path.join(root, "user", "mine"), ("README.md", "model/weights.bin"))
    model = user_file(os.path.join(root, "user", "model.keras"), "the user's own model\n")
    dump_file = user_file(os.path.join(root, "user", "dump.txt"))
    here = [caches, head, dataset]
    return [
        ("feature_extraction --output_dir=<the caches' folder>", [*train_cmd, f"--output_dir={caches}"],
         None, here, [caches], caches),
        ("feature_extraction --output_dir=. (the caches' folder)",
         [setup.tool("feature_extraction"), f"--training_file={os.path.basename(paths['train'])}",
          f"--validation_file={os.path.basename(paths['validation'])}", "--epochs=1", "--output_dir=."],
         caches, here, [caches], (".", os.path.basename(caches))),
        ("feature_extraction --output_dir=<an existing file>", [*train_cmd, f"--output_dir={notes}"],
         None, here + [notes], [notes], notes),
        ("feature_extraction --output_dir=<a folder of user files>", [*train_cmd, f"--output_dir={mydir}"],
         None, here + [mydir], [mydir], mydir),
        ("export_model --saved_model_dir=<a folder of user files>",
         [setup.tool("export_model"), f"--head_dir={head}", f"--output={os.path.join(root, 'user', 'new.keras')}",
          f"--saved_model_dir={mine}"], None, here + [mine], [mine, os.path.join(root, "user", "new.keras")],
         mine),
        ("export_model --output=<an existing file>, no --overwrite",
         [setup.tool("export_model"), f"--head_dir={head}", f"--output={model}"], None, here + [model],
         [model], model),
        ("predict --dump_dir=<a file>",
         [setup.tool("predict"), f"--head_dir={head}", f"--inputs={image}", f"--dump_dir={dump_file}"],
         None, here + [dump_file], [dump_file], dump_file),
        ("extract_features --output_dir=<a file>", extract_command(setup, dataset, notes), None,
         here + [notes], [notes], notes),
    ]


def read_only_case(setup, root):
    """extract_features --output_dir=<a read-only folder holding a user file>, as uid 65534 when root."""
    dataset = bad_inputs.ordinary(os.path.join(root, "ro_data"))
    folder = user_folder(os.path.join(root, "user", "read_only"), ("keep.txt",))
    os.chmod(folder, 0o555)
    try:
        prefix, why = common.unprivileged_prefix(root, dataset, os.path.join(root, "user", "locked_probe"))
        if prefix is None and os.geteuid() == 0:
            return common.Check("output folder", "extract_features --output_dir=<a read-only folder>", None, why)
        env = dict(os.environ)
        if prefix:
            home = os.path.join(root, "nobody_home")
            os.makedirs(home, exist_ok=True)
            os.chown(home, common.NOBODY, common.NOBODY)
            env.update(HOME=home, BOTTLENECK_CACHE_HOME=os.path.join(home, "cache"))
        command = extract_command(setup, dataset, folder)
        completed, destroyed, changed = guarded_run(setup, command, [dataset, folder], [folder], env=env,
                                                    prefix=prefix)
        ok, message = judge_refusal(completed, "extract_features", destroyed, changed,
                                    names=(os.path.basename(folder),))
        user = f"uid {common.NOBODY} via setpriv" if prefix else f"uid {os.geteuid()}"
        return common.Check("output folder", "extract_features --output_dir=<a read-only folder>", ok,
                            f"[{user}] {message}", destroyed=len(destroyed))
    finally:
        os.chmod(folder, 0o755)


def output_checks(setup):
    root = setup.path("issue10_outputs")
    os.makedirs(root, exist_ok=True)
    # A probe folder uid 65534 cannot read: unprivileged_prefix checks that setpriv really drops rights.
    os.makedirs(os.path.join(root, "user", "locked_probe"), exist_ok=True)
    os.chmod(os.path.join(root, "user", "locked_probe"), 0)
    checks, rows = [], []
    for name, command, cwd, protect, watch, named in output_cases(setup, root):
        completed, destroyed, changed = guarded_run(setup, command, protect, watch, cwd=cwd)
        command_name = os.path.basename(command[0])
        names = named if isinstance(named, tuple) else (os.path.basename(named),)
        ok, message = judge_refusal(completed, command_name, destroyed, changed, names=names)
        checks.append(common.Check("output folder", name, ok, message, destroyed=len(destroyed)))
    checks.append(read_only_case(setup, root))
    os.chmod(os.path.join(root, "user", "locked_probe"), 0o755)
    for check in checks:
        rows.append((check.name, check.destroyed, common.shorten(check.detail, 110), common.verdict(check.ok)))
    common.print_table("7b. issue 10: output folders (exit 1, one message naming the path, nothing touched)",
                       ("case", "user files destroyed", "message", "result"), rows,
                       [f"{c.name}: {common.shorten(c.detail, 400)}" for c in checks if c.ok is not True])
    return checks


def checks(setup):
    """Every part-7 check: bad inputs, then output folders."""
    return input_checks(setup) + output_checks(setup)
