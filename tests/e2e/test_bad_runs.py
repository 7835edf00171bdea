"""The battery, run directories (issue 16, points 7 and 8): crafted, damaged or misnamed runs.

Run names that would leave ``runs/``, symlinks leading out of a run or model directory, corrupt
checkpoints (one, or all of them), optimizer state that fails safe loading, and resuming what is
not a run. Each case: exit code, one line naming the problem, no traceback, nothing changed.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
import torch

from tests.e2e.bad_inputs import assert_clean_failure, invoke, snapshot
from tests.e2e.bad_run_fixtures import copy_run, make_finished_run


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    return make_finished_run(tmp_path_factory.mktemp("finished"))


@pytest.fixture
def run(finished, tmp_path) -> Path:
    """A copy of the finished run to damage; tmp_path also holds an 'outside' folder."""
    (tmp_path / "outside").mkdir()
    return copy_run(finished, tmp_path)


def resume(finished: Path, run: Path, *more: str):
    """--resume with a longer budget: the run has training left, so its checkpoint is loaded."""
    return invoke("train", str(finished / "tiny.yaml"), "--out", str(run), "--resume",
                  "--set", "train.max_steps=12", *more)


def rehash(checkpoint: Path, name: str) -> None:
    """Make state.json vouch for ``name``'s current bytes (as a crafted checkpoint would)."""
    state = json.loads((checkpoint / "state.json").read_text())
    data = (checkpoint / name).read_bytes()
    state["files"][name] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    (checkpoint / "state.json").write_text(json.dumps(state))


# --- a run name cannot place the run outside runs/ -------------------------------------------------


@pytest.mark.parametrize("name", ["../escaped", "/tmp/llmbricks-absolute-run", "a/b", "..", ".",
                                  ".tiny.1234abcd.tmp"],
                         ids=["dotdot", "absolute", "slash", "parent", "current", "temp-name"])
def test_a_run_name_cannot_leave_the_runs_folder(finished, tmp_path, name):
    before = snapshot(tmp_path, Path(name) if Path(name).is_absolute() else tmp_path / "x")
    result = invoke("train", str(finished / "tiny.yaml"), "--set", f"name={name}", cwd=tmp_path)
    assert_clean_failure(result, 2, "name:", "one folder name under runs/", "--out")
    assert snapshot(tmp_path, Path(name) if Path(name).is_absolute() else tmp_path / "x") == before


# --- symlinks leading out of a run or model directory ----------------------------------------------


def link_out(path: Path, outside: Path) -> Path:
    """Move ``path`` outside and leave a symlink to it in its place; return the outside copy."""
    target = outside / path.name
    path.rename(target)
    path.symlink_to(target, target_is_directory=target.is_dir())
    return target


@pytest.mark.parametrize("entry", ["config.yaml", "samples.txt", "metrics.jsonl",
                                   "checkpoints/step-8", "checkpoints/step-8/model.safetensors",
                                   "tokenizer"])
def test_resume_refuses_a_symlink_leading_out_of_the_run(finished, run, entry):
    link_out(run / entry, run.parent / "outside")
    before = snapshot(run.parent)
    result = resume(finished, run)
    assert_clean_failure(result, 1, "symlink", "outside", entry.split("/")[-1])
    assert snapshot(run.parent) == before  # the linked file outside was neither read nor appended


@pytest.mark.parametrize("verb", ["generate", "eval"])
def test_loading_refuses_a_symlinked_checkpoint_leading_outside(run, verb):
    link_out(run / "checkpoints" / "step-8", run.parent / "outside")
    before = snapshot(run.parent)
    args = ["--prompt", "the ", "-n", "2"] if verb == "generate" else []
    result = invoke(verb, str(run), *args)
    assert_clean_failure(result, 1, "symlink", "outside")
    assert snapshot(run.parent) == before


def test_a_model_directory_with_weights_linked_outside_is_refused(finished, tmp_path):
    from llmbricks.core.store.model_dir import save_model_dir
    from llmbricks.core.store.runs import load_run

    config, model, tokenizer = load_run(finished / "run")
    model_dir = save_model_dir(tmp_path / "model", config, model, tokenizer)
    (tmp_path / "outside").mkdir()
    link_out(model_dir / "model.safetensors", tmp_path / "outside")
    result = invoke("generate", str(model_dir), "--prompt", "the ", "-n", "2")
    assert_clean_failure(result, 1, "model.safetensors", "symlink", "outside")


# --- corrupt checkpoints ------------------------------------------------------------------------


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-100])


def every_checkpoint(run: Path, damage) -> None:
    for checkpoint in sorted((run / "checkpoints").iterdir()):
        damage(checkpoint)


@pytest.mark.parametrize("damage", [
    lambda c: truncate(c / "model.safetensors"),
    lambda c: (c / "state.json").write_text("{not json"),
    lambda c: (c / "optimizer.pt").unlink(),
    lambda c: (c / "state.json").write_text(json.dumps(
        {"step": 4, "files": {"../../outside/x": {"bytes": 1, "sha256": "0"}}})),
], ids=["truncated-weights", "garbled-state", "missing-optimizer", "state-names-a-path"])
def test_resume_refuses_when_every_checkpoint_is_corrupt(finished, run, damage):
    every_checkpoint(run, damage)
    before = snapshot(run.parent)
    result = resume(finished, run)
    line = assert_clean_failure(result, 1, "cannot resume", "no checkpoint verifies", "--overwrite")
    assert "step-" in line
    assert snapshot(run.parent) == before  # nothing retrained, nothing pruned


def test_generate_on_a_run_whose_checkpoints_are_all_corrupt(run):
    every_checkpoint(run, lambda c: truncate(c / "model.safetensors"))
    result = invoke("generate", str(run), "--prompt", "the ", "-n", "2")
    assert_clean_failure(result, 1, "no complete checkpoint")


def test_resume_of_a_finished_run_with_every_checkpoint_corrupt_still_refuses(finished, run):
    every_checkpoint(run, lambda c: truncate(c / "optimizer.pt"))
    result = invoke("train", str(finished / "tiny.yaml"), "--out", str(run), "--resume")
    assert_clean_failure(result, 1, "no checkpoint verifies")


# --- optimizer state that fails safe loading ------------------------------------------------------


class Payload:
    """What a crafted optimizer.pt carries: unpickling it would run a command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("content", ["pickled-code", "random-bytes", "wrong-structure"])
def test_optimizer_state_failing_safe_loading_is_untrusted(finished, run, content):
    checkpoint = run / "checkpoints" / "step-8"
    marker = run.parent / "outside" / "PWNED"
    optimizer = checkpoint / "optimizer.pt"
    if content == "pickled-code":
        torch.save({"optimizer": Payload(marker), "rng": {}}, optimizer)
    elif content == "random-bytes":
        optimizer.write_bytes(os.urandom(4096))
    else:
        torch.save({"weights": torch.zeros(2)}, optimizer)
    rehash(checkpoint, "optimizer.pt")
    before = snapshot(run.parent)
    result = resume(finished, run)
    line = assert_clean_failure(result, 1, str(optimizer), "untrusted or corrupt")
    assert "weights_only" not in line and "trust" not in line.replace("untrusted", "")
    assert not marker.exists()
    assert snapshot(run.parent) == before


# --- resuming what is not a run ---------------------------------------------------------------------


def test_resume_of_a_folder_that_is_not_a_run(finished, tmp_path):
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine\n")
    before = snapshot(tmp_path)
    result = invoke("train", str(finished / "tiny.yaml"), "--out", str(folder), "--resume")
    assert_clean_failure(result, 1, str(folder), "is not a run directory", "without --resume")
    assert snapshot(tmp_path) == before


def test_resume_of_a_directory_that_does_not_exist(finished, tmp_path):
    result = invoke("train", str(finished / "tiny.yaml"), "--out", str(tmp_path / "nowhere"),
                    "--resume")
    assert_clean_failure(result, 1, "nowhere", "does not exist", "without --resume")
    assert not (tmp_path / "nowhere").exists()


def test_resume_and_overwrite_together(finished, run):
    before = snapshot(run.parent)
    result = invoke("train", str(finished / "tiny.yaml"), "--out", str(run), "--resume",
                    "--overwrite")
    assert_clean_failure(result, 2, "--resume", "--overwrite")
    assert snapshot(run.parent) == before


def test_resume_of_a_finished_run_says_it_is_finished(finished, run):
    before = snapshot(run.parent)
    result = invoke("train", str(finished / "tiny.yaml"), "--out", str(run), "--resume")
    assert result.code == 0, result.stderr
    assert "already finished at step 8; nothing to do" in result.stdout
    assert result.stderr == ""
    assert snapshot(run.parent) == before  # no evaluation, sample or event again


def test_the_same_command_again_on_a_finished_run_gives_working_advice(finished, run):
    again = invoke("train", str(finished / "tiny.yaml"), "--out", str(run))
    assert_clean_failure(again, 1, "pass --resume to continue it", "--overwrite")
