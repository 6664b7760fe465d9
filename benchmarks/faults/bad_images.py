"""Part 6 of the fault suite: bad images and bad datasets.

* One dataset holding one file of each odd kind of `tests/bad_inputs.ODD_IMAGES` (the catalogue
  that `tests/test_bad_images.py` uses too): the decodable ones must become rows, the undecodable
  ones must be listed in `Cache.skipped` and logged (`Skipped ...`); each file is first checked to
  really be of its kind.
* An empty class folder; an unreadable class folder (as root, the child runs as uid 65534 with
  `setpriv`): one clear error, nothing written, no dataset file touched.
* A corrupted cache and a truncated cache (from part 5) and a mismatched train/validation pair given
  to `feature_extraction`: one clear error.

Before each run, every dataset file is snapshotted (`tests/bad_inputs.snapshot`); a file changed or
removed afterwards counts as destroyed.
"""

import dataclasses
import os
import re

from benchmarks.faults import common
from benchmarks.faults import corrupt_caches
from bottleneck_cache.pipeline import cache
from tests import bad_inputs

# ------------------------------------------------------------------------------------------------
# One dataset with every odd image.


def build_bad_dataset(root, rng):
    """3 classes x 4 good train images (+ 2 validation), plus one file of each odd kind in train/.

    Returns:
        `[(OddImage, relative path, fixture problem or None)]`, one per kind of
        `tests/bad_inputs.ODD_IMAGES`; a problem means the file is not of its kind.
    """
    common.make_dataset(root, rng, train=4, val=2)
    written = []
    for index, odd in enumerate(bad_inputs.ODD_IMAGES):
        relative = f"train/class_{index % 3}/{odd.kind}.{odd.extension}"
        odd.write(os.path.join(root, relative))
        written.append((odd, relative, odd.problem(os.path.join(root, relative))))
    return written


def run_bad_dataset(setup, rng):
    """Extracts the dataset of `build_bad_dataset`. Returns (kinds, completed, kept, skipped, destroyed)."""
    root = setup.path("badinputs")
    kinds = build_bad_dataset(root, rng)
    output = setup.path("badinputs_out")
    before = bad_inputs.snapshot(root)
    completed = common.run_command(setup.extract_command(output, dataset=root), setup.workdir, setup.timeout)
    destroyed = bad_inputs.destroyed(before)
    try:
        train = cache.read_cache(common.target_paths(output, "badinputs")["train"])
        kept, skipped = set(train.filenames), dict(train.skipped)
    except cache.CacheError as error:
        kept, skipped = set(), {}
        print(f"   bad-image extraction produced no readable cache (exit {completed.returncode}): {error}")
    return kinds, completed, kept, skipped, destroyed


def image_kind_checks(setup, rng):
    """One check per odd kind. Returns (checks, table rows, notes)."""
    kinds, completed, kept, skipped, destroyed = run_bad_dataset(setup, rng)
    warnings = [l for l in common.visible_lines(completed.stderr) if "Skipped " in l]
    checks, rows = [], []
    for odd, relative, fixture in kinds:
        expected, reason = odd.outcome, skipped.get(relative, "")
        outcome = ("kept" if relative in kept and relative not in skipped else
                   "skipped" if relative in skipped and relative not in kept else "missing")
        logged = any(relative in w for w in warnings)
        said = expected == "kept" or (logged and re.search(odd.reason, reason))  # skipped: logged, with the reason
        ok = completed.returncode == 0 and outcome == expected and bool(said) and not fixture
        detail = f"fixture problem: {fixture}" if fixture else common.shorten(reason, 90)
        # A destroyed dataset file is counted once, on the first row.
        checks.append(common.Check("bad input", odd.description, ok and not destroyed,
                                   "" if ok else f"{outcome}; {detail}", destroyed=len(destroyed) if not checks else 0))
        rows.append((odd.description, relative, expected, outcome + (", logged" if logged else ""), detail,
                     common.verdict(ok)))
    stdout = " | ".join(completed.stdout.splitlines())
    return checks, rows, [f"bad-image dataset run: exit {completed.returncode}; stdout: {stdout}"]


# ------------------------------------------------------------------------------------------------
# Bad datasets.


def refused_extraction(setup, dataset, output, prefix=(), env=None):
    """An extraction that must fail: exit 1, one message, nothing at all in `output`, no dataset file
    touched. Returns (ok, message, user files destroyed)."""
    before = bad_inputs.snapshot(dataset)
    completed = common.run_command(setup.extract_command(output, dataset=dataset), setup.workdir,
                                   setup.timeout, env=env, prefix=prefix)
    ok, message = common.clean_error(completed, "extract_features")
    written = common.all_entries(output) if os.path.isdir(output) else []
    if written:
        ok, message = False, f"{message} (and wrote {', '.join(written[:3])})"
    destroyed = bad_inputs.destroyed(before)
    if destroyed:
        ok, message = False, f"{message} (and destroyed {', '.join(destroyed[:3])})"
    return ok, message, len(destroyed)


def empty_class_check(setup, rng):
    """A dataset whose `class_empty/` folders (train and val) hold no image."""
    root = common.make_dataset(setup.path("emptyclass"), rng, train=3, val=1)
    for split in ("train", "val"):
        bad_inputs.empty_class_folder(os.path.join(root, split), "class_empty")
    ok, message, destroyed = refused_extraction(setup, root, setup.path("emptyclass_out"))
    return common.Check("bad input", "empty class folder", ok, message, destroyed=destroyed)


def unreadable_run(setup, root, locked, output_parent):
    """Extracts `root` (with `locked` chmod 000) as a user that cannot read it. Returns a Check."""
    prefix, why = common.unprivileged_prefix(root, os.path.join(root, "train", "class_1"), locked)
    if prefix is None:
        return common.Check("bad input", "unreadable class folder", None, why)
    env = dict(os.environ)
    if prefix:
        home = setup.path("nobody_home")
        os.makedirs(home)
        for folder in (home, output_parent):
            os.chown(folder, common.NOBODY, common.NOBODY)
        env["HOME"] = home
    ok, message, destroyed = refused_extraction(setup, root, os.path.join(output_parent, "caches"),
                                                prefix=prefix, env=env)
    mentions = any(w in message.lower() for w in ("permission", "denied", "unreadable", "cannot read",
                                                  "not readable"))
    if ok and not mentions:
        ok, message = False, f"misleading: says nothing of permissions: {message}"
    user = f"uid {common.NOBODY} via setpriv" if prefix else f"uid {os.geteuid()}"
    return common.Check("bad input", "unreadable class folder", ok, f"[{user}] {message}", destroyed=destroyed)


def unreadable_class_check(setup, rng):
    """A dataset whose `train/class_2/` is chmod 000."""
    root = common.make_dataset(setup.path("unreadable"), rng, train=3, val=1)
    locked = os.path.join(root, "train", "class_2")
    output_parent = setup.path("unreadable_out")
    os.makedirs(output_parent)
    os.chmod(locked, 0)
    try:
        return unreadable_run(setup, root, locked, output_parent)
    finally:
        os.chmod(locked, 0o755)


def bad_input_checks(setup, ref, corrupt, max_caches, rng):
    """Part 6. `corrupt`: part 5's checks (two are counted here too, when part 5 ran)."""
    checks, rows, notes = image_kind_checks(setup, rng)
    extra = [empty_class_check(setup, rng), unreadable_class_check(setup, rng)]
    by_name = {c.name: c for c in corrupt}
    for source, name in (("bit flipped in features", "corrupted cache (bit flip)"),
                         ("truncated cache", "truncated cache")):
        if source in by_name:
            extra.append(dataclasses.replace(by_name[source], group="bad input", name=name))
    other = max_caches.get("validation") if max_caches else None
    validation = other or common.target_paths(setup.path("badinputs_out"), "badinputs")["validation"]
    ok, message = corrupt_caches.refused_by_training(setup, ref.paths["train"], validation, "mismatched_pair")
    extra.append(common.Check("bad input", "mismatched train/validation pair", ok, message))
    for check in extra:
        rows.append((check.name, "", "one clear error", "", common.shorten(check.detail, 90),
                     common.verdict(check.ok)))
        notes.append(f"{check.name}: {common.shorten(check.detail, 400)}")
    checks += extra
    common.print_table("6. bad inputs", ("input", "file", "expected", "outcome", "reason / message", "result"),
                       rows, notes)
    return checks
