"""Never destroy what the tool did not write: every writer against every unsafe output path.

Each command is run through its `main`, as a user runs it; a refusal must be one
line on stderr naming the path, exit code 1, and leave every file of the user
(inputs included) byte for byte as it was, with nothing new written.
"""

import hashlib
import os
import pathlib
import subprocess
import sys
import tempfile

import pytest
from absl import flags
from absl.testing import flagsaver

from bottleneck_cache.bin import export_model
from bottleneck_cache.bin import extract_features
from bottleneck_cache.bin import feature_extraction
from bottleneck_cache.bin import fine_tune
from bottleneck_cache.bin import predict
from bottleneck_cache.bin import transfer_weights
from bottleneck_cache.classifiers import training
from bottleneck_cache.pipeline import files
from tests.test_training import write_split

flags.FLAGS.mark_as_parsed()


def snapshot(root):
    """`{relative path: (size, sha256)}` of every file under `root`, hidden ones included."""
    found = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                found[os.path.relpath(path, root)] = hashlib.sha256(f.read()).hexdigest()
    return found


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """A user's folder: two caches, a trained head, notes, a folder of their files, a home."""
    monkeypatch.chdir(tmp_path)
    os.makedirs("c")
    train = write_split(tmp_path / "c" / "x_train.h5", "train", seed=1)
    validation = write_split(tmp_path / "c" / "x_validation.h5", "validation", per_class=10, seed=2)
    head = str(tmp_path / "runs" / "head")
    training.train_head(train, validation, head="logreg", output_dir=head)
    (tmp_path / "notes.txt").write_text("my notes\n")
    os.makedirs("mine")
    (tmp_path / "mine" / "thesis.tex").write_text("\\section{Results}\n")
    os.makedirs("home")
    (tmp_path / "home" / "todo.txt").write_text("call mum\n")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    # Keras and matplotlib write their own settings under the home folder on import.
    monkeypatch.setenv("KERAS_HOME", str(tmp_path.parent / f"{tmp_path.name}-keras"))
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path.parent / f"{tmp_path.name}-matplotlib"))
    (tmp_path / "photo.png").write_bytes(b"not really a png")
    (tmp_path / "model.keras").write_bytes(b"the user's model")
    return {"root": tmp_path, "train": train, "validation": validation, "head": head}


def run_main(module, capsys, **flag_values):
    """Runs a command's `main`; returns `(exit code, stderr)`."""
    with pytest.raises(SystemExit) as exit_info:
        with flagsaver.as_parsed(**flag_values):
            module.main([module.__name__])
    return exit_info.value.code, capsys.readouterr().err


# What each folder-writing command is given, and the folder that holds its inputs.
FOLDER_WRITERS = {
    "feature_extraction": (feature_extraction, "output_dir", "c", lambda ws: dict(
        training_file=ws["train"], validation_file=ws["validation"], head="logreg")),
    "feature_extraction batch": (feature_extraction, "output_dir", "c", lambda ws: dict(
        training_file=ws["train"], validation_file=ws["validation"], head="logreg", l2="0.5,1")),
    "export_model --saved_model_dir": (export_model, "saved_model_dir", "runs", lambda ws: dict(
        head_dir=ws["head"], output="new.keras")),
    "fine_tune": (fine_tune, "output_dir", "runs", lambda ws: dict(
        head_dir=ws["head"], unfreeze_blocks="1")),
}
# Unsafe folders: the path given, and what the message must say of it.
UNSAFE_FOLDERS = {
    "an existing file": (lambda ws, inputs: "notes.txt", "'notes.txt', which is a file"),
    "a folder of the user's files": (lambda ws, inputs: "mine",
                                     r"'mine', a folder of other files \(thesis.tex\)"),
    "the folder holding the inputs": (lambda ws, inputs: inputs,
                                      r"which holds the input '.*': replacing it would delete"),
    "the current folder": (lambda ws, inputs: ".", "'.', which is the current folder"),
    "the home folder": (lambda ws, inputs: str(ws["root"] / "home"), "which is your home folder"),
    "the root folder": (lambda ws, inputs: "/", "'/', which is the root folder"),
}


@pytest.mark.parametrize("writer", list(FOLDER_WRITERS))
@pytest.mark.parametrize("case", list(UNSAFE_FOLDERS))
def test_folder_outputs_never_replace_what_the_tool_did_not_write(workspace, capsys, writer, case):
    module, flag, inputs, flag_values = FOLDER_WRITERS[writer]
    path_of, message = UNSAFE_FOLDERS[case]
    before = snapshot(workspace["root"])
    code, err = run_main(module, capsys, **flag_values(workspace),
                         **{flag: path_of(workspace, inputs)})
    assert code == 1
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"{module.__name__.split('.')[-1]}: error: Expected --{flag} to be ")
    assert __import__("re").search(message, err), err
    assert snapshot(workspace["root"]) == before  # Nothing changed, nothing added.


@pytest.mark.parametrize("writer", ["feature_extraction", "feature_extraction batch"])
def test_a_folder_the_tool_wrote_is_replaced_on_a_new_run(workspace, capsys, writer):
    module, flag, _, flag_values = FOLDER_WRITERS[writer]
    with flagsaver.as_parsed(**flag_values(workspace), output_dir="out"):
        feature_extraction.main(["feature_extraction"])
    assert os.path.isfile(os.path.join("out", files.MARKER))
    with flagsaver.as_parsed(**flag_values(workspace), output_dir="out"):
        feature_extraction.main(["feature_extraction"])  # No --overwrite needed for its own output.
    # A head folder of an earlier version (no marker, but its head_config.json) is ours too.
    os.remove(os.path.join(workspace["head"], files.MARKER))
    with flagsaver.as_parsed(**FOLDER_WRITERS["feature_extraction"][3](workspace),
                             output_dir=workspace["head"]):
        feature_extraction.main(["feature_extraction"])
    capsys.readouterr()


def test_fine_tune_needs_overwrite_for_its_own_earlier_output(workspace, capsys):
    earlier = workspace["root"] / "runs" / "head_fine_tuned"
    os.makedirs(earlier)
    files.write_marker(str(earlier), "fine_tune")
    code, err = run_main(fine_tune, capsys, head_dir=workspace["head"], unfreeze_blocks="1")
    assert code == 1
    assert "which exists. Pass --overwrite to replace it (an earlier output of this tool)" in err


FILE_WRITERS = {
    "export_model": (export_model, lambda ws: dict(head_dir=ws["head"])),
    "transfer_weights": (transfer_weights, lambda ws: dict(source="a.keras", target="b.keras")),
}


@pytest.mark.parametrize("writer", list(FILE_WRITERS))
@pytest.mark.parametrize("output, overwrite, message", [
    ("model.keras", False, "'model.keras', which exists. Pass --overwrite to replace it"),
    ("model.keras", True, r"which is not one \(its contents are of another kind\), so "
                          r"--overwrite does not apply to it"),
    ("mine.keras", True, r"'mine.keras', which is a folder"),
])
def test_file_outputs_never_replace_what_the_tool_did_not_write(workspace, capsys, writer, output,
                                                                overwrite, message):
    module, flag_values = FILE_WRITERS[writer]
    os.makedirs("mine.keras")
    before = snapshot(workspace["root"])
    code, err = run_main(module, capsys, **flag_values(workspace), output=output,
                         overwrite=str(overwrite).lower())
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert __import__("re").search(message, err), err
    assert snapshot(workspace["root"]) == before


def test_transfer_weights_never_writes_its_input(workspace, capsys):
    (workspace["root"] / "target.keras").write_bytes(b"the user's target")
    code, err = run_main(transfer_weights, capsys, source="model.keras", target="target.keras",
                         output="target.keras", overwrite="true")
    assert code == 1
    assert "Expected --output to be a file apart from the inputs. Received: 'target.keras', which " \
           "is one of the inputs. Pass another path: inputs are never written to." in err


@pytest.mark.parametrize("module, flag, extra", [
    (predict, "dump_dir", lambda ws: dict(head_dir=ws["head"], inputs="photo.png")),
    (extract_features, "output_dir", lambda ws: dict(network="vgg16", weights="none",
                                                     input_size="32")),
])
@pytest.mark.parametrize("path, message", [
    ("notes.txt", "'notes.txt', which is a file"),
    ("notes.txt/sub", "'notes.txt/sub', which lies under '.*notes.txt', a file"),
])
def test_folders_that_are_only_added_to_must_be_folders(workspace, capsys, module, flag, extra, path,
                                                        message):
    before = snapshot(workspace["root"])
    code, err = run_main(module, capsys, **extra(workspace), **{flag: path})
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert __import__("re").search(f"Expected --{flag} to be a folder. Received: {message}", err)
    assert snapshot(workspace["root"]) == before


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become another user")
def test_a_read_only_output_folder_is_named_in_the_message():
    # Under /tmp itself: pytest's own temporary folders are private to root.
    with tempfile.TemporaryDirectory() as top:
        os.chmod(top, 0o755)
        folder = pathlib.Path(top) / "read-only"
        folder.mkdir(mode=0o555)
        _check_as_nobody(folder)


def _check_as_nobody(folder):
    code = ("import os\n"
            "from pipeline import files\n"
            "os.setuid(65534)  # After the imports: the interpreter's own files may be root's only.\n"
            f"files.check_writable_dir({str(folder / 'caches')!r})\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert result.returncode == 1
    assert (f"OutputError: Expected --output_dir to be a folder this user can write. Received: "
            f"'{folder / 'caches'}', where '{folder}' cannot be written (Permission denied)"
            in result.stderr)


def test_check_output_dir_accepts_new_empty_and_own_folders(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    files.check_output_dir("new")
    os.makedirs("empty")
    files.check_output_dir("empty")
    with files.atomic_directory("own", command="test") as staging:
        open(os.path.join(staging, "result.txt"), "w").close()
    files.check_output_dir("own")
    with pytest.raises(files.OutputError, match="'own', which exists. Pass --overwrite"):
        files.check_output_dir("own", overwrite=False)
    files.check_output_dir("own", overwrite=True)
    os.symlink("own", "link")
    with pytest.raises(files.OutputError, match="'link', which is a symbolic link"):
        files.check_output_dir("link")
    with pytest.raises(files.OutputError, match="which is a folder that holds the current folder"):
        files.check_output_dir(str(tmp_path.parent))


def test_a_failed_block_leaves_the_older_output_and_no_temporary(tmp_path):
    with files.atomic_directory(str(tmp_path / "out")) as staging:
        open(os.path.join(staging, "v1"), "w").close()
    with pytest.raises(RuntimeError):
        with files.atomic_directory(str(tmp_path / "out")) as staging:
            open(os.path.join(staging, "v2"), "w").close()
            raise RuntimeError("killed")
    assert sorted(os.listdir(tmp_path)) == ["out"]
    assert sorted(os.listdir(tmp_path / "out")) == [files.MARKER, "v1"]
    with pytest.raises(RuntimeError):
        with files.atomic_file(str(tmp_path / "x.keras")) as temporary:
            open(temporary, "w").close()
            raise RuntimeError("killed")
    assert sorted(os.listdir(tmp_path)) == ["out"]


@pytest.mark.parametrize("what, make, message", [
    ("a file of the user's", lambda path: path.write_text("my results\n"), "a file that is not HDF5"),
    ("a folder", lambda path: path.mkdir(), "a folder"),
])
def test_overwrite_never_replaces_a_file_under_a_caches_name(tmp_path, what, make, message):
    from bottleneck_cache.features import extraction  # pylint: disable=g-import-not-at-top

    make(tmp_path / "vgg16_digits_bottleneck_features_train.h5")
    before = snapshot(tmp_path)
    with pytest.raises(ValueError, match=rf"Expected .*vgg16_digits_bottleneck_features_train.h5 to be "
                       rf"a cache this tool wrote, or nothing. Received: {message}, which "
                       r"--overwrite does not replace"):
        extraction.extract_features("vgg16", weights="none", input_size=32, output_dir=str(tmp_path),
                                    overwrite=True)
    assert snapshot(tmp_path) == before, what


def test_overwrite_replaces_a_damaged_cache(folder_dataset, tmp_path):
    from bottleneck_cache.features import extraction  # pylint: disable=g-import-not-at-top
    from bottleneck_cache.pipeline import cache  # pylint: disable=g-import-not-at-top

    options = dict(dataset_dir=folder_dataset, weights="none", input_size=32,
                   output_dir=str(tmp_path / "out"))
    path = extraction.extract_features("vgg16", **options)[0].path
    with open(path, "r+b") as f:  # Truncated: still HDF5's signature, no longer a valid cache.
        f.truncate(os.path.getsize(path) // 2)
    assert cache.is_hdf5_file(path)
    with pytest.raises(ValueError, match="Or pass --overwrite to replace it"):
        extraction.extract_features("vgg16", **options)
    results = extraction.extract_features("vgg16", overwrite=True, **options)
    assert not results[0].reused and cache.read_cache(path).features.shape[0] == 12


def test_each_refusal_of_the_output_checks_says_how_to_fix_it(tmp_path):
    notes, folder, link = tmp_path / "notes.txt", tmp_path / "folder", tmp_path / "link"
    notes.write_text("mine")
    folder.mkdir()
    link.symlink_to(folder)
    new_folder = r"Pass a new folder \(it is created\), or one this tool wrote before\.$"
    with pytest.raises(files.OutputError, match=r"^Expected --output_dir to be a folder\. Received: "
                       r"'.*notes\.txt', which is a file\. Pass a new folder \(it is created\), or one this "
                       r"tool wrote before\.$"):
        files.check_output_dir(str(notes))
    with pytest.raises(files.OutputError, match=r"^Expected --output_dir to be a folder\. Received: "
                       r"'.*link', which is a symbolic link\. " + new_folder):
        files.check_output_dir(str(link))
    with pytest.raises(files.OutputError, match=r"^Expected --output to be a file\. Received: '.*folder', "
                       r"which is a folder\. Pass a file path\.$"):
        files.check_output_file(str(folder))
    with pytest.raises(files.OutputError, match=r"^Expected --output to be a new file\. Received: '.*notes\.txt', "
                       r"which exists\. Pass --overwrite to replace it, or choose another path\.$"):
        files.check_output_file(str(notes))
    with pytest.raises(files.OutputError, match=r"^Expected --dump_dir to be a folder\. Received: '.*notes\.txt', "
                       r"which is a file\. Pass a folder path \(it is created if needed\)\.$"):
        files.check_writable_dir(str(notes), "--dump_dir")
    assert notes.read_text() == "mine" and sorted(os.listdir(tmp_path)) == ["folder", "link", "notes.txt"]
