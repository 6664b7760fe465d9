"""Tests of batch head jobs: pairing caches by attributes, sweeping settings, results tables."""

import csv
import os
import shutil

import pytest
from absl import flags
from absl.testing import flagsaver

from bottleneck_cache.bin import feature_extraction
from bottleneck_cache.classifiers import batch
from bottleneck_cache.classifiers import training
from bottleneck_cache.pipeline import files
from tests.test_training import write_split

flags.FLAGS.mark_as_parsed()


@pytest.fixture
def caches(tmp_path):
    """Training and validation caches of 2 networks x 2 datasets, in one folder."""
    folder = tmp_path / "caches"
    os.makedirs(folder)
    for network in ("vgg16", "resnet50"):
        for dataset in ("cifar10", "gtsrb"):
            for split in ("train", "validation"):
                write_split(folder / f"{network}_{dataset}_bottleneck_features_{split}.h5", split,
                            network=network, dataset=dataset, seed=len(split))
    return folder


def test_pairs_by_attributes_not_names(caches, tmp_path):
    # Misleading names: pairing must come from the files' own attributes.
    os.replace(caches / "vgg16_gtsrb_bottleneck_features_validation.h5", tmp_path / "a.h5")
    os.replace(caches / "resnet50_cifar10_bottleneck_features_validation.h5", tmp_path / "b.h5")
    train = sorted(str(p) for p in caches.glob("*_train.h5"))
    validation = sorted(str(p) for p in caches.glob("*_validation.h5")) + [str(tmp_path / "a.h5"),
                                                                          str(tmp_path / "b.h5")]
    pairs = dict(batch.pair_caches(train, validation))
    assert pairs[str(caches / "vgg16_gtsrb_bottleneck_features_train.h5")] == str(tmp_path / "a.h5")
    assert pairs[str(caches / "resnet50_cifar10_bottleneck_features_train.h5")] == str(tmp_path / "b.h5")


def test_unpairable_caches_are_refused(caches):
    train = sorted(str(p) for p in caches.glob("*_train.h5"))
    validation = sorted(str(p) for p in caches.glob("*_validation.h5"))
    with pytest.raises(ValueError, match=r"Expected a validation cache from the same extraction as "
                       r".*vgg16_gtsrb_bottleneck_features_train.h5 \(network=vgg16, dataset=gtsrb"):
        batch.pair_caches(train, [v for v in validation if "vgg16_gtsrb" not in v])
    with pytest.raises(ValueError, match=r"no training cache for .*resnet50_gtsrb_bottleneck_features_validation.h5"):
        batch.pair_caches([t for t in train if "resnet50_gtsrb" not in t], validation)
    with pytest.raises(ValueError, match=r"Expected only training caches in --training_file. Received: "
                       r".*_validation.h5, a validation split"):
        batch.pair_caches(validation, validation)


def test_expand_files(caches):
    assert len(batch.expand_files(f"{caches}/*_train.h5", "training_file")) == 4
    both = batch.expand_files(f"{caches}/vgg16_cifar10_bottleneck_features_train.h5,{caches}/*gtsrb*_train.h5",
                              "training_file")
    assert [os.path.basename(p) for p in both] == [
        "resnet50_gtsrb_bottleneck_features_train.h5", "vgg16_cifar10_bottleneck_features_train.h5",
        "vgg16_gtsrb_bottleneck_features_train.h5"]
    with pytest.raises(ValueError, match=r"Expected --training_file to name cache files .* Received: "
                       r"'nothing\*.h5', which matches no file"):
        batch.expand_files("nothing*.h5", "training_file")


def test_sweep_names_only_what_varies():
    settings = batch.sweep(training.HeadSettings(), head=["softmax", "mlp"], learning_rate=[0.1, 0.01],
                           hidden_units=[256])
    assert len(settings) == 4
    jobs = batch.make_jobs([("c/vgg_cifar10_100_bottleneck_features_train.h5", "v.h5")], settings)
    assert [j.name for j in jobs] == ["vgg_cifar10_100_softmax_lr0.1", "vgg_cifar10_100_softmax_lr0.01",
                                      "vgg_cifar10_100_mlp_lr0.1", "vgg_cifar10_100_mlp_lr0.01"]
    with pytest.raises(ValueError, match=r"Expected head to be one of"):
        batch.sweep(training.HeadSettings(), head=["svm"])


def test_batch_writes_every_job_and_the_results_table(caches, tmp_path):
    output = tmp_path / "runs"
    rows, summary = batch.train_heads(f"{caches}/*_train.h5", f"{caches}/*_validation.h5",
                                      head=["softmax", "logreg"], epochs=3, output_dir=str(output),
                                      log=lambda line: None, plots=True)
    assert len(rows) == 8 and not any(row.get("error") for row in rows)
    assert sorted(os.listdir(output)) == sorted(
        [f"{n}_{d}_{h}" for n in ("vgg16", "resnet50") for d in ("cifar10", "gtsrb")
         for h in ("softmax", "logreg")] + ["results.csv", "results.md", "results.png", files.MARKER])
    with open(output / "results.csv") as f:
        table = list(csv.DictReader(f))
    assert {(r["network"], r["dataset"], r["head"]) for r in table} == {
        (n, d, h) for n in ("vgg16", "resnet50") for d in ("cifar10", "gtsrb") for h in ("softmax", "logreg")}
    assert all(0.0 <= float(r["val_accuracy"]) <= 1.0 and r["error"] == "" for r in table)
    markdown = (output / "results.md").read_text()
    assert markdown.splitlines()[0] == "| network | head settings | cifar10 | gtsrb |"
    assert "| vgg16 | head=logreg, learning_rate=0.001, hidden_units=256, dropout=0.5, l2=0.0 |" in markdown
    assert (output / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "8 of 8 jobs succeeded." in summary


def test_a_failed_job_does_not_stop_the_others(caches, tmp_path, capsys):
    # A validation cache with other classes pairs by attributes but cannot be trained against.
    write_split(caches / "vgg16_gtsrb_bottleneck_features_validation.h5", "validation", network="vgg16",
                dataset="gtsrb", num_classes=4)
    output = tmp_path / "runs"
    with pytest.raises(SystemExit) as exit_info:
        with flagsaver.as_parsed(training_file=f"{caches}/*_train.h5",
                                 validation_file=f"{caches}/*_validation.h5", head="logreg",
                                 output_dir=str(output)):
            feature_extraction.main(["feature_extraction"])
    assert exit_info.value.code == 1
    out = capsys.readouterr().out
    assert "3 of 4 jobs succeeded." in out
    assert "FAILED vgg16_gtsrb_logreg: ValueError: The training and validation caches differ in class_names" in out
    assert "| vgg16 | head=logreg" in out and "failed" in out
    assert sorted(p for p in os.listdir(output) if not p.startswith(("results", "."))) == [
        "resnet50_cifar10_logreg", "resnet50_gtsrb_logreg", "vgg16_cifar10_logreg"]


def test_each_cache_is_read_once(caches, tmp_path, monkeypatch):
    reads = []
    original = batch.cache.read_cache
    monkeypatch.setattr(batch.cache, "read_cache", lambda path: reads.append(path) or original(path))
    batch.train_heads(f"{caches}/vgg16_*_train.h5", f"{caches}/vgg16_*_validation.h5",
                      head=["logreg"], l2=[0.5, 1.0], output_dir=str(tmp_path / "runs"),
                      log=lambda line: None, workers=1)  # Reads in this process, where they are counted.
    assert len(reads) == len(set(reads)) == 4


def test_bad_sweep_value_on_the_command_line(caches):
    with pytest.raises(Exception, match=r"Expected --learning_rate to be a comma-separated list of float "
                       r"values. Received: 0.1,fast"):
        with flagsaver.as_parsed(training_file="a.h5", validation_file="b.h5", learning_rate="0.1,fast"):
            feature_extraction.main(["feature_extraction"])


def test_a_stacked_sweep_gives_each_head_what_training_it_alone_gives(caches, tmp_path):
    train = f"{caches}/vgg16_cifar10_bottleneck_features_train.h5"
    validation = f"{caches}/vgg16_cifar10_bottleneck_features_validation.h5"
    rows, _ = batch.train_heads(train, validation, head=["softmax", "mlp", "logreg"],
                                learning_rate=[0.1, 0.003], l2=[0.0, 0.01], hidden_units=[16],
                                epochs=4, batch_size=8, output_dir=str(tmp_path / "runs"),
                                log=lambda line: None)
    assert len(rows) == 12 and not any(row.get("error") for row in rows)
    together = {row["job"]: row for row in rows}
    # softmax and mlp: 4 settings each trained as one stack; logreg one by one.
    assert {row["head"]: row["heads_trained_together"] for row in rows} == {"softmax": 4, "mlp": 4,
                                                                             "logreg": 1}
    for row in rows:
        if row["head"] == "logreg" and row["learning_rate"] != 0.1:
            continue
        alone = training.train_head(train, validation, head=row["head"], learning_rate=row["learning_rate"],
                                    l2=row["l2"], hidden_units=16, epochs=4, batch_size=8,
                                    output_dir=str(tmp_path / "alone" / row["job"]))
        assert together[row["job"]]["val_accuracy"] == pytest.approx(alone["val_accuracy"], abs=1e-9)
        assert together[row["job"]]["val_loss"] == pytest.approx(alone["val_loss"], rel=1e-4)
    assert len({round(row["val_loss"], 6) for row in rows}) > 3  # The settings made a difference.


def test_auto_l2_in_a_sweep_applies_to_logreg(caches, tmp_path):
    settings = batch.sweep(training.HeadSettings(), head=["softmax", "logreg"], l2=[0.0, "auto"])
    assert [(s.head, s.l2) for s in settings] == [("softmax", 0.0), ("logreg", 0.0), ("logreg", "auto")]
    jobs = batch.make_jobs([("c/vgg_cifar10_bottleneck_features_train.h5", "v.h5")], settings)
    assert [j.name for j in jobs] == ["vgg_cifar10_softmax_l20", "vgg_cifar10_logreg_l20",
                                      "vgg_cifar10_logreg_l2auto"]
    with pytest.raises(ValueError, match="Expected l2='auto' only with head logreg"):
        batch.sweep(training.HeadSettings(), head=["softmax", "logreg"], l2=["auto"])
    with pytest.raises(Exception, match=r"Expected --l2 to be a comma-separated list of float \(or "
                       r"'auto'\) values. Received: 0.1,often"):
        with flagsaver.as_parsed(training_file="a.h5", validation_file="b.h5", l2="0.1,often"):
            feature_extraction.main(["feature_extraction"])


def test_two_workers_give_what_one_gives(caches, tmp_path):
    kwargs = dict(head=["softmax", "mlp"], hidden_units=[8], epochs=3, log=lambda line: None)
    one, _ = batch.train_heads(f"{caches}/*_train.h5", f"{caches}/*_validation.h5", workers=1,
                               output_dir=str(tmp_path / "one"), **kwargs)
    lines = []
    two, _ = batch.train_heads(f"{caches}/*_train.h5", f"{caches}/*_validation.h5", workers=2,
                               output_dir=str(tmp_path / "two"), **{**kwargs, "log": lines.append})
    assert [row["job"] for row in two] == [row["job"] for row in one] and len(lines) == 8
    for mine, theirs in zip(two, one):
        assert mine["val_loss"] == pytest.approx(theirs["val_loss"], rel=1e-5) and not mine.get("error")
        assert mine["network"] == theirs["network"] and mine["dataset"] == theirs["dataset"]


def test_validation_files_must_be_one_validation_cache_per_extraction(caches, tmp_path):
    train = sorted(str(p) for p in caches.glob("*_train.h5"))
    validation = sorted(str(p) for p in caches.glob("*_validation.h5"))
    with pytest.raises(ValueError, match=r"^Expected only validation caches in --validation_file\. Received: "
                       r".*_train\.h5, a train split\.$"):
        batch.pair_caches(train, train)
    copy = str(tmp_path / os.path.basename(validation[0]))
    shutil.copy(validation[0], copy)
    with pytest.raises(ValueError, match=r"^Expected one validation cache per extraction\. Received two for .*: "
                       r".*_validation\.h5 and .*_validation\.h5\. Pass only one of them\.$"):
        batch.pair_caches(train, validation + [copy])
