"""The battery, files and disks (issue 16, points 3 and 8): where an output cannot go.

An output under a regular file, on a read-only file system, or on a disk that fills up during a
checkpoint; a non-empty directory that is not the command's own kind of output. Each case: exit
code, one line naming the path and the cause, no traceback, nothing outside the target changed;
for the disk cases, the previous checkpoint intact, nothing temporary left, and a resume that
finishes the run.
"""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from llmbricks.core.store import runs
from llmbricks.core.store.runs import Run, verify_checkpoint
from tests.e2e.bad_inputs import assert_clean_failure, invoke, snapshot
from tests.e2e.bad_run_fixtures import (
    copy_run,
    make_finished_run,
    read_only,
    small_tmpfs,
    temporaries,
)
from tests.e2e.train_fixtures import tiny_config


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    return make_finished_run(tmp_path_factory.mktemp("finished"))


@pytest.fixture(scope="module")
def model_dir(finished, tmp_path_factory) -> Path:
    """A model directory (what merge, import and export write and read)."""
    out = tmp_path_factory.mktemp("model") / "model"
    from llmbricks.core.store.model_dir import save_model_dir
    from llmbricks.core.store.runs import load_run

    config, model, tokenizer = load_run(finished / "run")
    return save_model_dir(out, config, model, tokenizer)


def foreign(tmp_path: Path) -> Path:
    """A user's folder that happens to be named as the output."""
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("my notes\n")
    (folder / "config.yaml").write_text("not: llmbricks\n")
    return folder


# --- an output where a directory cannot be --------------------------------------------------------


def writers(finished: Path, model_dir: Path, out: Path) -> dict[str, list[str]]:
    """Every command that writes a directory, writing ``out``."""
    return {
        "train": ["train", str(finished / "tiny.yaml"), "--out", str(out)],
        "merge": ["model", "merge", str(finished / "run"), str(out)],
        "import": ["import", "gpt2", str(finished / "no-hf-folder-needed"), str(out)],
        "export": ["export", "hf", str(model_dir), str(out)],
        "ablate": ["ablate", str(finished / "tiny.yaml"), "--grid", "train.lr=0.001,0.002",
                   "--out", str(out)],
    }


@pytest.mark.parametrize("verb", ["train", "merge", "import", "export", "ablate"])
def test_an_output_under_a_regular_file(finished, model_dir, tmp_path, verb):
    blocker = tmp_path / "file.txt"
    blocker.write_text("a file, not a folder\n")
    before = snapshot(tmp_path, finished)
    result = invoke(*writers(finished, model_dir, blocker / "out")[verb])
    assert_clean_failure(result, 1, str(blocker), "is a file, not a directory")
    assert snapshot(tmp_path, finished) == before


@pytest.mark.parametrize("verb", ["import", "export"])
def test_an_output_that_is_a_regular_file(finished, model_dir, tmp_path, verb):
    blocker = tmp_path / "out"
    blocker.write_text("a file, not a folder\n")
    before = snapshot(tmp_path)
    result = invoke(*writers(finished, model_dir, blocker)[verb], "--overwrite")
    assert_clean_failure(result, 1, str(blocker), "exists and is not a directory")
    assert snapshot(tmp_path) == before


# --- a non-empty directory that is not the command's own kind of output ---------------------------


@pytest.mark.parametrize(("verb", "flags", "kind"), [
    ("train", [], "not a run directory"),
    ("train", ["--overwrite"], "not a run directory"),
    ("merge", ["--overwrite"], "not a model directory"),
    ("import", ["--overwrite"], "not a model directory"),
    ("export", ["--overwrite"], "not a hugging face model folder"),
    ("ablate", [], "not an ablation directory"),
], ids=["train", "train-overwrite", "merge-overwrite", "import-overwrite", "export-overwrite",
        "ablate"])
def test_a_users_folder_is_never_replaced(finished, model_dir, tmp_path, verb, flags, kind):
    folder = foreign(tmp_path)
    before = snapshot(tmp_path, finished)
    result = invoke(*writers(finished, model_dir, folder)[verb], *flags)
    line = assert_clean_failure(result, 1, str(folder), kind, "choose another directory")
    assert "--resume" not in line  # a user's folder is no run to resume
    assert snapshot(tmp_path, finished) == before


def test_train_overwrite_replaces_a_run_and_only_a_run(finished, tmp_path):
    run = copy_run(finished, tmp_path)
    outside = snapshot(finished)
    result = invoke("train", str(finished / "tiny.yaml"), "--out", str(run), "--overwrite",
                    "--set", "train.max_steps=4")
    assert result.code == 0, result.stderr
    assert Run.open(run).latest_checkpoint().step == 4
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-4"]
    assert snapshot(finished) == outside and temporaries(tmp_path) == []


# --- read-only ----------------------------------------------------------------------------------


@pytest.mark.parametrize("verb", ["train", "merge", "import"])
def test_an_output_in_a_read_only_directory(finished, model_dir, tmp_path, verb):
    locked = tmp_path / "locked"
    locked.mkdir()
    before = snapshot(tmp_path)
    with read_only(locked):
        result = invoke(*writers(finished, model_dir, locked / "out")[verb])
    line = assert_clean_failure(result, 1, str(locked / "out"), "cannot write")
    assert "read-only" in line or "permission denied" in line
    assert snapshot(tmp_path) == before


def test_resuming_a_run_on_a_read_only_file_system(finished, tmp_path):
    run = copy_run(finished, tmp_path)
    before = snapshot(tmp_path)
    with read_only(run):
        result = invoke("train", str(finished / "tiny.yaml"), "--out", str(run), "--resume",
                        "--set", "train.max_steps=12")
    line = assert_clean_failure(result, 1, str(run), "cannot write")
    assert "read-only" in line or "permission denied" in line
    assert snapshot(tmp_path) == before


# --- a disk that fills up during a checkpoint ---------------------------------------------------


def second_call(original, fail):
    """``original``, except that its second call runs ``fail`` instead (the disk is full then)."""
    calls = []

    def patched(*args, **kwargs):
        calls.append(1)
        return fail(*args, **kwargs) if len(calls) == 2 else original(*args, **kwargs)

    return patched


def full_in_optimizer_state(monkeypatch):
    """torch.save hits ENOSPC mid-file: torch reports it as ``enforce fail ... unexpected pos``."""
    real_open = open

    class FullFile:
        def __init__(self, handle, room):
            self.handle, self.room = handle, room

        def write(self, data):
            if len(data) > self.room:
                raise OSError(errno.ENOSPC, "No space left on device")
            self.room -= len(data)
            return self.handle.write(data)

        def __getattr__(self, name):
            return getattr(self.handle, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

    def full_open(path, mode="r", *args, **kwargs):
        return FullFile(real_open(path, mode, *args, **kwargs), room=1000)

    monkeypatch.setattr(runs, "open", second_call(real_open, full_open), raising=False)


def full_in_weights(monkeypatch):
    """safetensors reports a full disk as ``SafetensorError: ... (os error 28)``."""
    from safetensors import SafetensorError

    def fail(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"\0" * 100)  # what it managed to write
        raise SafetensorError("Error while serializing: I/O error: No space left on device "
                              "(os error 28)")

    monkeypatch.setattr(runs, "save_file", second_call(runs.save_file, fail))


def full_in_state(monkeypatch):
    """A plain OSError while the second checkpoint's state.json is written."""
    real_write_text = Path.write_text
    states = []

    def write_text(self, data, *args, **kwargs):
        if self.name == "state.json":
            states.append(self)
            if len(states) == 2:
                raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return real_write_text(self, data, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", write_text)


@pytest.mark.parametrize("fill", [full_in_optimizer_state, full_in_weights, full_in_state],
                         ids=["optimizer-torch-enforce-fail", "weights-safetensors", "state-json"])
def test_a_disk_full_during_a_checkpoint(tmp_path, monkeypatch, fill):
    config = tiny_config(tmp_path, max_steps=8, eval_every=4, checkpoint_every=4)
    run = tmp_path / "run"
    outside = snapshot(Path(config), tmp_path / "corpus.txt")
    with monkeypatch.context() as patch:
        fill(patch)
        result = invoke("train", str(config), "--out", str(run))
    assert_clean_failure(result, 1, str(run / "checkpoints" / "step-8"), "no space left")
    assert verify_checkpoint(run / "checkpoints" / "step-4").step == 4  # the previous one, intact
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-4"]
    assert temporaries(tmp_path) == []
    assert snapshot(Path(config), tmp_path / "corpus.txt") == outside
    resumed = invoke("train", str(config), "--out", str(run), "--resume")
    assert resumed.code == 0, resumed.stderr
    assert "done: 8 steps" in resumed.stdout
    assert verify_checkpoint(run / "checkpoints" / "step-8").state["final"] is True


def test_a_real_small_disk_fills_up_during_a_checkpoint(tmp_path):
    config = tiny_config(tmp_path, max_steps=40, eval_every=4, checkpoint_every=4,
                         keep_checkpoints=3)
    with small_tmpfs(tmp_path / "disk", "1200k") as disk:
        result = invoke("train", str(config), "--out", str(disk / "run"))
        line = assert_clean_failure(result, 1, str(disk / "run"), "no space left on the device")
        assert "checkpoints/step-" in line
        kept = Run.open(disk / "run").checkpoint_dirs()
        assert kept and all(verify_checkpoint(path).step == step for step, path in kept)
        assert temporaries(disk) == []
