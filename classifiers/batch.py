"""Many head jobs in one process: caches paired by their attributes, settings swept.

After one extraction, users train many heads: several networks x datasets x
head settings. Each cache is read once; each job writes its own folder; a
failed job is reported and the others go on; `results.csv`, `results.md` and
`results.png` put the validation accuracies side by side.
"""

import csv
import dataclasses
import glob
import itertools
import multiprocessing
import os
from concurrent import futures

from bottleneck_cache.classifiers import training
from bottleneck_cache.pipeline import cache
from bottleneck_cache.pipeline import files

# The settings that can be swept, in job-name order.
SWEEPABLE = ("head", "learning_rate", "hidden_units", "dropout", "l2")


@dataclasses.dataclass(frozen=True)
class Job:
    """One head to train.

    Attributes:
        name: the job's folder name, e.g. `"vgg16_cifar10_100_mlp_lr0.01"`.
        training_file: the training cache.
        validation_file: the validation cache.
        settings: a `training.HeadSettings`.
    """

    name: str
    training_file: str
    validation_file: str
    settings: training.HeadSettings


def expand_files(patterns, flag):
    """Expands a comma-separated list of paths and globs into sorted, unique paths.

    Raises:
        ValueError: a glob matches no file.
    """
    found = []
    for pattern in (p.strip() for p in patterns.split(",") if p.strip()):
        if not glob.has_magic(pattern):
            found.append(pattern)  # A missing file is for the cache reader to explain.
            continue
        matches = [m for m in sorted(glob.glob(pattern)) if os.path.isfile(m)]
        if not matches:
            raise ValueError(
                f"Expected --{flag} to name cache files (paths or globs, comma-separated). "
                f"Received: {pattern!r}, which matches no file."
            )
        found.extend(matches)
    return sorted(dict.fromkeys(found))




def _dataset_label(metadata):
    """`cifar10_100` for a training cache with 100 per class (`cifar10_100_aug4` with 4
    augmented views per image), else the dataset name."""
    label = f"{metadata.dataset}_{metadata.per_class}" if metadata.per_class else metadata.dataset
    return f"{label}_aug{metadata.augment_copies}" if metadata.augment_copies else label


def _describe(metadata):
    return f"network={metadata.network}, dataset={metadata.dataset}, layer={metadata.layer or '-'}"


def pair_caches(training_files, validation_files):
    """Pairs every training cache with the validation cache of the same extraction.

    Caches pair when their network, weights, layer, pooling, input size,
    preprocessing and dataset agree (read from their own attributes, never from
    file names). Several training caches (e.g. different `--per_class`) may share
    one validation cache.

    Returns:
        A list of `(training_file, validation_file)`.

    Raises:
        ValueError: a file of the wrong split, a training cache without a
            validation cache, an ambiguous pair, or a validation cache left over.
    """
    validations = {}
    for path in validation_files:
        metadata, _ = cache.read_metadata(path)
        if metadata.split != "validation":
            raise ValueError(f"Expected only validation caches in --validation_file. Received: "
                             f"{path}, a {metadata.split} split.")
        other = validations.setdefault(cache.pair_key(metadata), path)
        if other != path:
            raise ValueError(f"Expected one validation cache per extraction. Received two for "
                             f"{_describe(metadata)}: {other} and {path}. Pass only one of them.")
    pairs, used = [], set()
    for path in training_files:
        metadata, _ = cache.read_metadata(path)
        if metadata.split != "train":
            raise ValueError(f"Expected only training caches in --training_file. Received: {path}, "
                             f"a {metadata.split} split.")
        match = validations.get(cache.pair_key(metadata))
        if match is None:
            raise ValueError(f"Expected a validation cache from the same extraction as {path} "
                             f"({_describe(metadata)}). Received none among --validation_file; add it.")
        pairs.append((path, match))
        used.add(match)
    unused = sorted(set(validations.values()) - used)
    if unused:
        raise ValueError(f"Expected every validation cache to pair with a training cache. Received "
                         f"no training cache for {', '.join(unused)}; add it or leave it out.")
    return pairs


def sweep(base, **values):
    """Returns every `HeadSettings` of the cartesian product of the swept values.

    Args:
        base: a `training.HeadSettings` with the fixed settings.
        **values: setting name -> list of values (names from `SWEEPABLE`).

    Raises:
        ValueError: a setting out of range.
    """
    names = [name for name in SWEEPABLE if name in values]
    combos = [dict(zip(names, combo)) for combo in itertools.product(*(values[name] for name in names))]
    if any(not isinstance(value, str) for value in values.get("l2", ())):
        # l2="auto" is for logreg; beside numbers in a sweep, other heads take only the numbers.
        combos = [c for c in combos if not (c.get("l2") == "auto" and c.get("head", base.head) != "logreg")]
    return [dataclasses.replace(base, **combo).check() for combo in combos]


def _value_text(value):
    return value if isinstance(value, str) else f"{value:g}"


def make_jobs(pairs, settings_list):
    """Names one job per pair and settings; swept values other than the head appear in names."""
    varying = [name for name in SWEEPABLE[1:]
               if len({getattr(s, name) for s in settings_list}) > 1]
    short = {"learning_rate": "lr", "hidden_units": "h", "dropout": "do", "l2": "l2"}
    jobs = []
    for (train, validation), settings in itertools.product(pairs, settings_list):
        suffix = "".join(f"_{short[name]}{_value_text(getattr(settings, name))}" for name in varying)
        jobs.append(Job(f"{cache.run_name(train)}_{settings.head}{suffix}", train, validation, settings))
    return jobs


def run_jobs(jobs, output_dir, log=print, plots=False, workers=None):
    """Trains every job; a failure is reported and the others go on.

    Each cache is read once. Jobs on the same pair of caches whose heads have
    the same shape (`training.stack_key`: e.g. softmax heads with several
    learning rates or L2 penalties, mlp heads of equal width) train together
    as one stack (`classifiers.trainer`), each with its own settings; logreg
    jobs train one by one; jobs that differ only in settings their head
    ignores (e.g. logreg jobs of a learning-rate sweep) share one training.
    Pairs that share no cache may train in separate processes (`workers`).
    Writes `<output_dir>/<job name>/` per job (see `training.train_head`),
    then `results.csv`, `results.md` and, with `plots`, `results.png` in
    `output_dir`.

    Args:
        jobs: `Job`s.
        output_dir: the root folder.
        log: where progress lines go.
        plots: also draw each job's and the results' plots.
        workers: processes (default 1); pairs that share no cache then train in
            parallel, each process with one BLAS thread. On the benchmark's
            2-vCPU machine, with another job using a core, 2 workers made the
            36-job sweep 11-20% slower (21-23 s against 19 s), hence the default.

    Returns:
        One dict per job, in order: its name, files, settings and metrics, or `error`.
    """
    rows = [{"job": job.name, "training_file": job.training_file,
             "validation_file": job.validation_file, **dataclasses.asdict(job.settings)}
            for job in jobs]
    tasks = {}  # validation file -> (training file, validation file) -> stack key -> job indices
    for index, job in enumerate(jobs):
        key = training.stack_key(job.settings) or training.effective_settings(job.settings)
        pairs = tasks.setdefault(job.validation_file, {})
        pairs.setdefault((job.training_file, job.validation_file), {}).setdefault(key, []).append(index)
    done = [0]

    def apply(events):
        for index, update in events:
            rows[index].update(update)
            if "error" in update or "val_accuracy" in update:
                done[0] += 1
                prefix = f"[{done[0]}/{len(jobs)}] {jobs[index].name}"
                log(f"{prefix}: FAILED: {update['error']}" if "error" in update else
                    f"{prefix}: val_accuracy={update['val_accuracy']:.4f}")

    workers = min(workers or 1, len(tasks))
    if workers > 1:
        # spawn, not fork: the parent may hold TensorFlow's or BLAS' threads (e.g. in a test run).
        context = multiprocessing.get_context("spawn")
        with futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
            waiting = [pool.submit(run_task, jobs, list(task.items()), output_dir, plots)
                       for task in tasks.values()]
            for future in futures.as_completed(waiting):
                apply(future.result())
    else:
        for task in tasks.values():
            apply(run_task(jobs, list(task.items()), output_dir, plots))
    write_results(rows, output_dir, plots)
    return rows


def run_task(jobs, pairs, output_dir, plots):
    """Trains the jobs of pairs that share a validation cache (each cache read once, in this process).

    Args:
        jobs: all `Job`s.
        pairs: `[((training file, validation file), {stack key: [job index, ...]}), ...]`.
        output_dir: the root folder.
        plots: also draw each job's plots.

    Returns:
        `[(job index, dict of row updates), ...]`: labels, then the metrics or an `error`.
    """
    events, loaded = [], {}
    for (training_file, validation_file), stacks in pairs:
        indices = [i for group in stacks.values() for i in group]
        try:
            train, validation = (_load(loaded, path) for path in (training_file, validation_file))
            label = {"network": train.metadata.network, "dataset": _dataset_label(train.metadata)}
            events += [(index, label) for index in indices]
            training.check_pair(train, validation)
            standardized = training.standardize_pair(train, validation)
        except Exception as error:  # pylint: disable=broad-except  # A failed job must not stop the others.
            events += [(index, {"error": _error_text(error)}) for index in indices]
            continue
        for group in stacks.values():
            events += _run_stack(train, validation, standardized, [jobs[i] for i in group], group,
                                 output_dir, plots)
    return events


def _error_text(error):
    return f"{type(error).__name__}: {error}"


def _load(loaded, path):
    if path not in loaded:
        loaded[path] = cache.read_cache(path)
    return loaded[path]


def _run_stack(train, validation, standardized, stack_jobs, indices, output_dir, plots):
    """Trains the heads of one stack together (each distinct head once), then writes each job's folder.

    Returns:
        `[(job index, metrics or {"error": ...}), ...]`.
    """
    distinct = list(dict.fromkeys(training.effective_settings(job.settings) for job in stack_jobs))
    try:
        fitted = dict(zip(distinct, training.fit_heads(train, validation, distinct, standardized)))
    except Exception as error:  # pylint: disable=broad-except
        return [(index, {"error": _error_text(error)}) for index in indices]
    events = []
    for index, job in zip(indices, stack_jobs):
        head = fitted[training.effective_settings(job.settings)]
        try:
            results = training.write_fitted(train, validation, job.settings, head,
                                            os.path.join(output_dir, job.name), plots)
        except Exception as error:  # pylint: disable=broad-except
            events.append((index, {"error": _error_text(error)}))
            continue
        events.append((index, {k: results.get(k) for k in ("val_accuracy", "val_top5_accuracy", "val_loss",
                                                           "fit_seconds", "heads_trained_together")}))
    return events


_CSV_COLUMNS = ("job", "network", "dataset", *SWEEPABLE, "epochs", "batch_size", "early_stopping",
                "seed", "val_accuracy", "val_top5_accuracy", "val_loss", "fit_seconds", "error",
                "training_file", "validation_file")


def _settings_label(row):
    return ", ".join(f"{name}={row[name]}" for name in SWEEPABLE)


def results_markdown(rows):
    """The lab's table: one row per network and head settings, one column per dataset."""
    datasets = sorted({row.get("dataset", "?") for row in rows})
    lines = ["| network | head settings | " + " | ".join(datasets) + " |",
             "|---|---|" + "---|" * len(datasets)]
    table = {}
    for row in rows:
        cell = "failed" if row.get("error") else f"{row['val_accuracy']:.4f}"
        table.setdefault((row.get("network", "?"), _settings_label(row)), {})[row.get("dataset", "?")] = cell
    for (network, settings), cells in sorted(table.items()):
        lines.append(f"| {network} | {settings} | "
                     + " | ".join(cells.get(d, "") for d in datasets) + " |")
    return "\n".join(lines) + "\n"


def write_results(rows, output_dir, plots=True):
    """Writes `results.csv`, `results.md` and, with `plots`, `results.png` (a bar chart) to `output_dir`."""
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, "results.csv"), "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=_CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    with open(os.path.join(output_dir, "results.md"), "w", encoding="utf-8") as f:
        f.write(results_markdown(rows))
    done = [row for row in rows if not row.get("error")]
    if done and plots:
        from bottleneck_cache.classifiers import reports  # pylint: disable=g-import-not-at-top

        reports.plot_results(done, os.path.join(output_dir, "results.png"))


def format_summary(rows):
    """A closing summary: the results table and the failed jobs."""
    failed = [row for row in rows if row.get("error")]
    text = results_markdown(rows)
    text += f"\n{len(rows) - len(failed)} of {len(rows)} jobs succeeded."
    for row in failed:
        text += f"\nFAILED {row['job']}: {row['error']}"
    return text


def train_heads(training_file, validation_file, head=("softmax",), learning_rate=(1e-3,),
                hidden_units=(256,), dropout=(0.5,), l2=(0.0,), epochs=50, batch_size=256,
                early_stopping=0, seed=0, output_dir=None, log=print, plots=False, workers=None):
    """Stage two for one pair of caches or many: what `feature_extraction` runs.

    One training and one validation file with one setting each is one job,
    written to `output_dir` (default `runs/<cache stem>_<head>`) with a
    per-epoch log. Anything more (globs or comma lists of caches, comma lists
    of settings) is a batch: caches are paired by their attributes, settings
    swept, heads of one shape on one pair trained together (see `run_jobs`),
    and each job written to `<output_dir>/<job name>` (default root `runs`),
    with `results.csv` and `results.md` (and `results.png` with `plots`)
    beside them.

    Args:
        training_file: a path, glob, or comma-separated list of them.
        validation_file: likewise.
        head, learning_rate, hidden_units, dropout, l2: sequences of values
            (`l2` may hold `"auto"`, which applies to logreg heads).
        epochs, batch_size, early_stopping, seed: fixed settings.
        output_dir: see above.
        log: where batch progress lines go.
        plots: also draw `history.png`, `confusion_matrix.png` per job and
            `results.png`.
        workers: processes for a batch (see `run_jobs`).

    Returns:
        `(rows, summary)`: one dict per job (metrics or `error`), and the text
        to print at the end.

    Raises:
        ValueError: bad settings, files that match nothing, or caches that
            cannot be paired (nothing is trained then). A single job's own
            failure is raised too; in a batch it is reported in its row.
    """
    base = training.HeadSettings(epochs=epochs, batch_size=batch_size,
                                 early_stopping=early_stopping, seed=seed)
    settings = sweep(base, head=list(head), learning_rate=list(learning_rate),
                     hidden_units=list(hidden_units), dropout=list(dropout), l2=list(l2))
    pairs = _pairs_of(training_file, validation_file)
    jobs = make_jobs(pairs, settings)
    if len(jobs) == 1:
        job = jobs[0]
        results = training.train_head(job.training_file, job.validation_file,
                                      **dataclasses.asdict(job.settings), output_dir=output_dir,
                                      plots=plots)
        return [{"job": job.name, **results}], training.format_summary(results)
    root = output_dir or "runs"
    _claim_output(root, jobs, pairs)
    rows = run_jobs(jobs, root, log=log, plots=plots, workers=workers)
    return rows, format_summary(rows)


def _pairs_of(training_file, validation_file):
    """The `(training file, validation file)` pairs that two `--*_file` values name."""
    training_files = expand_files(training_file, "training_file")
    validation_files = expand_files(validation_file, "validation_file")
    if len(training_files) == 1 and len(validation_files) == 1:
        # One explicit pair: train_head says which attribute differs if they do not match.
        return [(training_files[0], validation_files[0])]
    return pair_caches(training_files, validation_files)


def _claim_output(root, jobs, pairs):
    """Checks the batch's root and every job folder (before the first job trains), then claims the root."""
    cache_files = [path for pair in pairs for path in pair]
    files.check_output_dir(root, "--output_dir", inputs=cache_files)
    for job in jobs:
        files.check_output_dir(os.path.join(root, job.name), "--output_dir", inputs=cache_files)
    files.claim_directory(root, "--output_dir", inputs=cache_files, command="feature_extraction")
