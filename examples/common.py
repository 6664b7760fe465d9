"""What the example scripts share: their start, their output folder check and their tables."""

import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def output_dir(value):
    """Returns `--output_dir` as an absolute path, refusing one inside the repository.

    Raises:
        app.UsageError: the folder is the repository or inside it (examples write
            caches and models there).
    """
    from absl import app  # pylint: disable=g-import-not-at-top

    output = os.path.abspath(value)
    if output == ROOT or output.startswith(ROOT + os.sep):
        raise app.UsageError(f"Expected --output_dir outside the repository. Received: {output}.")
    return output


def write_results(output, text):
    """Prints `text` (the example's Markdown tables) and writes it to `<output>/results.md`."""
    text = text.rstrip("\n") + "\n"
    with open(os.path.join(output, "results.md"), "w", encoding="utf-8") as f:
        f.write(text)
    print()
    print(text)


def markdown_table(header, rows):
    """Returns a Markdown table of `rows` (sequences of cells) under `header`."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def start(argv):
    """Refuses stray arguments and quiets TensorFlow's start-up chatter (before it loads).

    Raises:
        app.UsageError: positional arguments were given.
    """
    from absl import app  # pylint: disable=g-import-not-at-top

    if len(argv) > 1:
        raise app.UsageError(f"Too many command-line arguments: {' '.join(argv[1:])}")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
