"""`llmbricks train`: the run directory, its files, exact resume after SIGKILL, Ctrl-C, damage."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from llmbricks.core.errors import CheckpointError
from llmbricks.core.store.runs import Run, load_run, verify_checkpoint
from tests.e2e.train_fixtures import (
    events,
    kill,
    start_training,
    steps_logged,
    tiny_config,
    train,
    wait_for,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def weights(run: Path, step: int) -> dict[str, torch.Tensor]:
    return load_file(run / "checkpoints" / f"step-{step}" / "model.safetensors")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """One complete 40-step run, shared by the read-only tests below."""
    tmp = tmp_path_factory.mktemp("finished")
    result = train(str(tiny_config(tmp)), "--out", "run", tmp_path=tmp)
    assert result.returncode == 0, result.stderr
    assert "done: 40 steps" in result.stdout and "run: run" in result.stdout
    return tmp / "run"


def test_a_run_directory_holds_everything_design_md_lists(finished_run):
    run = finished_run
    for name in ("config.yaml", "manifest.json", "tokenizer", "metrics.jsonl", "loss.png",
                 "samples.txt"):
        assert (run / name).exists(), name
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["model"]["vocab_size"] == len(set((run.parent / "corpus.txt").read_text()))
    assert config["train"]["trainer"] == {"name": "pretrain"}  # every default written out
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["seed"] == 7 and manifest["versions"]["torch"] == torch.__version__
    kinds = {c["kind"]: c for c in manifest["components"]}
    assert kinds["attention"]["name"] == "sdpa" and kinds["attention"]["distribution"] == "llmbricks"
    assert {"trainer", "logger", "datasource", "tokenizer"} <= set(kinds)
    # keep_checkpoints: 3 -> the newest three survive; each verifies and loads without pickle.
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-30", "step-35", "step-40"]
    state = verify_checkpoint(run / "checkpoints" / "step-40").state
    assert state["step"] == 40 and state["tokens"] == 40 * 4 * 2 * 16
    extra = torch.load(run / "checkpoints" / "step-40" / "optimizer.pt", weights_only=True)
    assert set(extra) == {"optimizer", "rng"}
    assert (run / "samples.txt").read_text().count("--- step ") == 8


def test_metrics_jsonl_schema(finished_run):
    rows = events(finished_run)
    kinds = [r["event"] for r in rows]
    assert kinds[0] == "start" and kinds[-1] == "end"
    assert kinds.count("step") == 40 and kinds.count("eval") == 8 and kinds.count("sample") == 8
    assert kinds.count("checkpoint") == 8
    start = rows[0]
    assert start["max_steps"] == 40 and start["tokens_per_step"] == 128 and start["resumed"] is False
    types = {"step": {"step": int, "epoch": float, "loss": float, "lr": float, "grad_norm": float,
                      "tokens": int, "tokens_per_s": float, "elapsed_s": float, "time": float},
             "eval": {"step": int, "train_loss": float, "val_loss": float, "val_ppl": float,
                      "tokens": int},
             "checkpoint": {"step": int, "path": str},
             "sample": {"step": int, "prompt": str, "text": str},
             "end": {"step": int, "status": str, "elapsed_s": float, "tokens": int}}
    for row in rows:
        assert list(row)[0] == "event"
        for key, kind in types.get(row["event"], {}).items():
            assert isinstance(row[key], kind), (row["event"], key, row[key])
    steps = [r for r in rows if r["event"] == "step"]
    assert [r["step"] for r in steps] == list(range(1, 41))
    assert steps[-1]["loss"] < steps[0]["loss"]
    assert rows[-1]["status"] == "completed" and rows[-1]["step"] == 40


def test_loss_png_is_a_valid_png(finished_run):
    from matplotlib.image import imread

    data = (finished_run / "loss.png").read_bytes()
    assert data[:8] == PNG_SIGNATURE
    image = imread(finished_run / "loss.png")
    assert image.shape[0] > 100 and image.shape[1] > 100


@pytest.mark.data_files("the-verdict.txt")
def test_eval_and_generate_read_the_run(finished_run, cli):
    result = cli("eval", str(finished_run), "--json", cwd=finished_run.parent)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    last_eval = [r for r in events(finished_run) if r["event"] == "eval"][-1]
    assert report["data"] == "text (validation split)" and report["perplexity"] > 1
    assert abs(report["loss"] - last_eval["val_loss"]) < 0.5  # all val windows vs an eval sample
    text = finished_run.parent / "other.txt"
    text.write_text("the sea and the king rode out over green hills at dawn " * 20)
    other = cli("eval", str(finished_run), "--data", f"{{name: text, path: {text}}}",
                cwd=finished_run.parent)
    assert other.returncode == 0, other.stderr
    assert other.stdout.startswith("text: loss ") and "perplexity" in other.stdout
    unknown = cli("eval", str(finished_run), "--data", "the_verdict", cwd=finished_run.parent)
    assert unknown.returncode == 1 and "not in the 'char' tokenizer's vocabulary" in unknown.stderr
    greedy = cli("generate", str(finished_run), "--prompt", "the ", "-n", "8", cwd=finished_run.parent)
    assert greedy.returncode == 0, greedy.stderr
    sample = [r for r in events(finished_run) if r["event"] == "sample"][-1]
    assert greedy.stdout == "the " + sample["text"] + "\n"  # the run's own greedy sample


def test_sigkill_then_resume_ends_bitwise_identical_to_an_uninterrupted_run(tmp_path):
    config = str(tiny_config(tmp_path))
    straight = train(config, "--out", "straight", tmp_path=tmp_path)
    assert straight.returncode == 0, straight.stderr
    process = start_training(config, "--out", "killed", tmp_path=tmp_path)
    wait_for(lambda: (tmp_path / "killed/checkpoints/step-20").is_dir(), process)
    assert process.poll() is None
    kill(process, signal.SIGKILL)
    assert process.returncode == -signal.SIGKILL
    survivors = Run.open(tmp_path / "killed").latest_checkpoint()
    assert survivors is not None and 20 <= survivors.step < 40
    resumed = train(config, "--out", "killed", "--resume", tmp_path=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    ours, theirs = weights(tmp_path / "killed", 40), weights(tmp_path / "straight", 40)
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    # The resumed run's metrics continue the curve: each step once, the eval losses identical.
    rows = events(tmp_path / "killed")
    assert [r["step"] for r in rows if r["event"] == "step"] == list(range(1, 41))
    assert [r["val_loss"] for r in rows if r["event"] == "eval"] == \
        [r["val_loss"] for r in events(tmp_path / "straight") if r["event"] == "eval"]


def test_ctrl_c_finishes_the_step_checkpoints_exits_130_and_resumes(tmp_path):
    config = str(tiny_config(tmp_path, max_steps=100000, checkpoint_every=100000,
                             eval_every=100000))
    process = start_training(config, "--out", "run", tmp_path=tmp_path)
    wait_for(lambda: steps_logged(tmp_path / "run" / "metrics.jsonl") >= 3, process)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "Resume with:" in err and "--out run --resume" in err and "Traceback" not in err
    last = Run.open(tmp_path / "run").latest_checkpoint()
    assert last is not None and last.step >= 3
    assert events(tmp_path / "run")[-1]["status"] == "interrupted"
    (tmp_path / "run" / "checkpoints" / ".step-9.dead.tmp").mkdir()  # as a kill mid-write leaves
    again = train(config, "--out", "run", "--resume", "--set", f"train.max_steps={last.step + 2}",
                  tmp_path=tmp_path)
    assert again.returncode == 0, again.stderr
    assert f"done: {last.step + 2} steps" in again.stdout
    assert not list((tmp_path / "run" / "checkpoints").glob(".*.tmp"))
    stored = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert stored["train"]["max_steps"] == last.step + 2  # the run records its new budget


def test_a_damaged_checkpoint_is_named_and_resume_falls_back_to_the_previous_one(tmp_path):
    config = str(tiny_config(tmp_path, max_steps=15))
    assert train(config, "--out", "run", tmp_path=tmp_path).returncode == 0
    run = tmp_path / "run"
    newest = run / "checkpoints" / "step-15" / "model.safetensors"
    newest.write_bytes(newest.read_bytes()[:-100])  # truncated
    with pytest.raises(CheckpointError, match="step-15 is corrupt: model.safetensors has .* bytes"):
        verify_checkpoint(run / "checkpoints" / "step-15")
    with pytest.warns(UserWarning, match="skipping checkpoint .*step-15 is corrupt"):
        assert Run.open(run).latest_checkpoint().step == 10
    middle = run / "checkpoints" / "step-10" / "optimizer.pt"
    data = bytearray(middle.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one bit flipped
    middle.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="optimizer.pt does not match its sha256"):
        verify_checkpoint(run / "checkpoints" / "step-10")
    with pytest.warns(UserWarning, match="step-15"):
        _, model, _ = load_run(run)  # generate/eval need good weights only: step 10's are intact
    expected = weights(run, 10)
    loaded = model.state_dict()
    assert all(torch.equal(loaded[name], tensor) for name, tensor in expected.items())
    resumed = train(config, "--out", "run", "--resume", tmp_path=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "done: 15 steps" in resumed.stdout
    rows = events(run)
    assert [r["step"] for r in rows if r["event"] == "resume"] == [5]
    assert verify_checkpoint(run / "checkpoints" / "step-15").step == 15


def test_usage_errors_are_one_line(tmp_path, cli):
    config = str(tiny_config(tmp_path, max_steps=2))
    assert train(config, "--out", "run", tmp_path=tmp_path).returncode == 0
    again = train(config, "--out", "run", tmp_path=tmp_path)
    assert again.returncode == 1 and "already exists and is not empty: pass --resume" in again.stderr
    changed = train(config, "--out", "run", "--resume", "--set", "model.emb_dim=64", tmp_path=tmp_path)
    assert changed.returncode == 2 and "model.emb_dim changed" in changed.stderr
    planned = train(config, "--out", "run", "--resume", "--set", "ablation.seeds=5",
                    tmp_path=tmp_path)  # an ablation section does not change how a run trains
    assert planned.returncode == 0, planned.stderr
    nothing = train(config, "--out", "nothing-here", "--resume", tmp_path=tmp_path)
    assert nothing.returncode == 1 and "is not a run directory" in nothing.stderr
    no_budget = train(config, "--set", "train.max_steps=null", tmp_path=tmp_path)
    assert no_budget.returncode == 2 and "no training budget" in no_budget.stderr
    assert "Traceback" not in again.stderr + changed.stderr + nothing.stderr + no_budget.stderr
    bad_eval = cli("eval", str(tmp_path / "nothing-here"))
    assert bad_eval.returncode == 1 and "not a directory" in bad_eval.stderr


def test_default_run_directories_are_numbered_and_resume_finds_the_newest(tmp_path):
    config = str(tiny_config(tmp_path, max_steps=2))
    for expected in ("runs/tiny", "runs/tiny-2"):
        result = train(config, tmp_path=tmp_path)
        assert result.returncode == 0 and f"run: {expected}" in result.stdout
    resumed = train(config, "--resume", "--set", "train.max_steps=3", tmp_path=tmp_path)
    assert resumed.returncode == 0 and "run: runs/tiny-2" in resumed.stdout


@pytest.mark.parametrize("setting", [
    "train.precision=bf16",
    pytest.param("train.compile=true", marks=pytest.mark.slow),
])
def test_bf16_autocast_and_torch_compile_train(tmp_path, setting):
    config = str(tiny_config(tmp_path, max_steps=6, eval_every=3, checkpoint_every=3))
    result = train(config, "--out", "run", "--set", setting, tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [r for r in events(tmp_path / "run") if r["event"] == "step"]
    assert len(rows) == 6 and all(0 < r["loss"] < 10 for r in rows)
    assert rows[-1]["loss"] < rows[0]["loss"]


@pytest.mark.data_files("gpt2.tiktoken", "the-verdict.txt")
def test_an_imported_gpt2_directory_trains_generates_and_evaluates(tmp_path, cli):
    from tests.plugins.test_weights import save_hf

    save_hf(tmp_path / "hf", n_layer=2, n_embd=64, n_head=2)
    assert cli("import", "gpt2", str(tmp_path / "hf"), str(tmp_path / "gpt2")).returncode == 0
    for verb in (["generate", str(tmp_path / "gpt2"), "--prompt", "Every effort", "-n", "5"],
                 ["eval", str(tmp_path / "gpt2"), "--data", "the_verdict", "--batches", "2"]):
        result = cli(*verb)
        assert result.returncode == 0, result.stderr
    overrides = ["--set", "data.source=the_verdict", "--set", "train.max_steps=1",
                 "--set", "train.batch_size=2", "--set", "train.lr=1e-12",
                 "--set", "train.loggers=[jsonl]", "--set", "train.eval_batches=1"]
    result = train(str(tmp_path / "gpt2"), "--out", "tuned", *overrides, tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load((tmp_path / "tuned" / "config.yaml").read_text())
    assert config["train"]["init_from"] == str(tmp_path / "gpt2")
    # One step at lr 1e-12 moves nothing visible: the run started from the imported weights.
    _, start, _ = load_run(tmp_path / "gpt2")
    _, tuned, _ = load_run(tmp_path / "tuned")
    before, after = start.state_dict(), tuned.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.allclose(before[n], after[n], atol=1e-8) for n in before)
    wrong = train(str(tmp_path / "gpt2"), "--out", "bad", *overrides, "--set", "model.emb_dim=32",
                  tmp_path=tmp_path)
    assert wrong.returncode == 2 and "train.init_from: the weights in" in wrong.stderr


def test_tensorboard_logger_writes_readable_event_files(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = str(tiny_config(tmp_path, max_steps=6, eval_every=3, checkpoint_every=3,
                             loggers=["jsonl", "tensorboard"]))
    assert train(config, "--out", "run", tmp_path=tmp_path).returncode == 0
    board = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    board.Reload()
    losses = board.Scalars("train/loss")
    assert [s.step for s in losses] == list(range(1, 7))
    steps = [r for r in events(tmp_path / "run") if r["event"] == "step"]
    assert [s.value for s in losses] == pytest.approx([r["loss"] for r in steps])
    assert [s.step for s in board.Scalars("eval/val_loss")] == [3, 6]


def test_setup_failures_are_config_errors_and_leave_no_run_behind(tmp_path):
    config = str(tiny_config(tmp_path, max_steps=2))
    cases = [("train.device=gpu", 2, "train.device: 'gpu' is not a device"),
             ("train.device=cuda" if not torch.cuda.is_available() else "train.device=gpu", 2,
              "train.device:"),
             ("train.init_from=nowhere", 2, "train.init_from: nowhere is not a run or model"),
             ("train.batch_size=100000", 1, "make no batch of 100000")]
    for setting, code, message in cases:
        result = train(config, "--out", "run", "--set", setting, tmp_path=tmp_path)
        assert result.returncode == code and message in result.stderr, (setting, result.stderr)
        assert not (tmp_path / "run").exists()  # the same --out works once the mistake is fixed
    assert train(config, "--out", "run", tmp_path=tmp_path).returncode == 0
