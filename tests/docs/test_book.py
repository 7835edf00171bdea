"""The book guide stays true: each chapter's command, at a reduced budget, gives the figures
docs/book.md reports that do not depend on the budget (token counts, batches, parameter counts,
LoRA counts, split sizes, padded lengths, collate outputs, schedule landmarks).

Each test runs the command docs/book.md and the config's first lines give, in a fresh folder, as
a user would; the long runs' figures (losses, accuracies) are in docs/book.md with their commands.
Chapters 6, 7 and appendix E start from GPT-2's weights: a tiny GPT-2 with GPT-2's vocabulary
stands in for them, imported with `llmbricks import hf` into the folders the configs name.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from llmbricks import build_model, load_config
from llmbricks.core.tasks.instruction import collate
from llmbricks.core.train.trainable import apply_trainable
from tests.conftest import EXAMPLES, free_port, run_cli
from tests.e2e.train_fixtures import events, train_env

BOOK = EXAMPLES / "book"
EOT = 50256
#: A reduced budget: a couple of steps, one evaluation batch, no samples, no console.
QUICK = ("--set", "train.epochs=null", "--set", "train.max_steps=2", "--set", "train.eval_every=2",
         "--set", "train.eval_batches=1", "--set", "train.sample_prompt=null",
         "--set", "train.loggers=[jsonl]")
#: A small shape for runs whose figures do not depend on the model's size.
SMALL = ("--set", "model.n_layers=2", "--set", "model.emb_dim=64", "--set", "model.n_heads=2")
#: The shape of the tiny GPT-2 that stands in for GPT-2's weights (its vocabulary is GPT-2's).
TINY = (*SMALL, "--set", "model.context_length=128")


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    result = run_cli(*args, cwd=cwd)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def cli_json(*args: str, cwd: Path) -> dict:
    return json.loads(cli(*args, "--json", cwd=cwd).stdout)


def start_event(run: Path) -> dict:
    return next(e for e in events(run) if e["event"] == "start")


def test_every_chapter_has_a_config_that_opens_with_its_command():
    names = sorted(p.stem for p in BOOK.glob("*.yaml"))
    assert names == ["appA-ddp", "appD-training-loop", "appE-lora", "ch02-text-data",
                     "ch03-attention", "ch04-gpt", "ch05-pretrain", "ch06-classify",
                     "ch07-instruct"]
    guide = (EXAMPLES.parent / "docs" / "book.md").read_text()
    for name in names:
        text = (BOOK / f"{name}.yaml").read_text()
        head = text.split("\nname:")[0]
        command = next(line.strip("# ").strip() for line in head.splitlines()
                       if f"examples/book/{name}.yaml" in line)
        assert command.startswith(("llmbricks ", "torchrun ")), (name, command)
        assert f"examples/book/{name}.yaml" in guide, f"docs/book.md does not run {name}"
        assert load_config(BOOK / f"{name}.yaml").name == f"book-{name.split('-')[0]}"


@pytest.mark.data_files("gpt2.tiktoken", "the-verdict.txt")
def test_ch02_tokens_and_the_books_first_batch(tmp_path):
    stats = cli_json("data", "stats", str(BOOK / "ch02-text-data.yaml"), "--batches", "1",
                     cwd=tmp_path)
    assert stats["tokens"] == 5145
    first = stats["first_batches"][0]
    assert first["inputs"][:2] == [[40, 367, 2885, 1464], [1807, 3619, 402, 271]]
    assert first["targets"][0] == [367, 2885, 1464, 1807]
    assert len(first["inputs"]) == 8  # batch_size 8, max_length 4, stride 4
    words = cli_json("data", "stats", str(BOOK / "ch02-text-data.yaml"),
                     "--set", "model.tokenizer=regex", cwd=tmp_path)
    assert (words["tokens"], words["vocab_used"], words["vocab_size"]) == (4690, 1130, 1132)


def test_ch04_parameter_counts(tmp_path):
    summary = cli_json("model", "summary", str(BOOK / "ch04-gpt.yaml"), cwd=tmp_path)
    assert summary["total"] == 163_009_536
    assert summary["total_tied"] == 124_412_160
    assert summary["fp32_mib"] == 621.83


@pytest.mark.slow
def test_ch04_golden_output_of_the_untrained_model():
    """The book: seed 123, untrained GPTModel(GPT_CONFIG_124M), "Hello, I am", 10 greedy tokens."""
    import torch

    from llmbricks.core.tasks.generation import generate_ids

    config = load_config(BOOK / "ch04-gpt.yaml")
    torch.manual_seed(config.seed)
    model = build_model(config).eval()
    ids = generate_ids(model, torch.tensor([[15496, 11, 314, 716]]), max_new_tokens=10).tokens
    assert ids.tolist()[0] == [15496, 11, 314, 716, 27018, 24086, 47843, 30961, 42348, 7267,
                               49706, 43231, 47062, 34657]


@pytest.mark.slow
@pytest.mark.data_files("gpt2.tiktoken", "the-verdict.txt")
def test_ch05_batches_and_model(tmp_path):
    stats = cli_json("data", "stats", str(BOOK / "ch05-pretrain.yaml"), cwd=tmp_path)
    assert (stats["train_tokens"], stats["val_tokens"]) == (4630, 515)
    assert stats["batches"] == {"train": 9, "val": 1}  # the book's 9 and 1 batches of 2 x 256
    summary = cli_json("model", "summary", str(BOOK / "ch05-pretrain.yaml"), cwd=tmp_path)
    # 163,009,536 less the 768 positions a 256-token context does not need
    assert summary["total"] == 163_009_536 - (1024 - 256) * 768
    cli("train", str(BOOK / "ch05-pretrain.yaml"), *SMALL, *QUICK, cwd=tmp_path)
    assert start_event(tmp_path / "runs" / "book-ch05")["tokens_per_step"] == 2 * 256


@pytest.mark.slow
@pytest.mark.data_files("gpt2.tiktoken", "the-verdict.txt")
def test_appD_schedule_and_run(tmp_path):
    plot = cli("schedule", "plot", str(BOOK / "appD-training-loop.yaml"), "--steps", "135",
               "--out", "lr.png", cwd=tmp_path).stdout
    assert "warmup 27, 135 steps" in plot                # int(0.2 * 15 epochs x 9 batches)
    assert "step 27: 0.001" in plot and "step 134: 1e-05" in plot  # peak, then cosine to min_lr
    assert (tmp_path / "lr.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Three steps, one of warmup: up to the peak, the peak, then the cosine's end at min_lr.
    cli("train", str(BOOK / "appD-training-loop.yaml"), *SMALL, *QUICK, "--set",
        "train.max_steps=3", "--set", "train.warmup_steps=1", "--set", "train.log_every=1",
        cwd=tmp_path)
    steps = [e for e in events(tmp_path / "runs" / "book-appD") if e["event"] == "step"]
    assert [round(e["lr"], 8) for e in steps] == [1e-3, 1e-3, 1e-5]


@pytest.fixture(scope="module")
def gpt2_folders(tmp_path_factory) -> Path:
    """A folder with models/gpt2-small and models/gpt2-medium: a tiny random GPT-2 imported."""
    transformers = pytest.importorskip("transformers")
    import torch

    root = tmp_path_factory.mktemp("book")
    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(
        vocab_size=EOT + 1, n_positions=128, n_embd=64, n_layer=2, n_head=2))
    hf.save_pretrained(root / "hf-gpt2")
    cli("import", "hf", str(root / "hf-gpt2"), "models/gpt2-small", cwd=root)
    shutil.copytree(root / "models" / "gpt2-small", root / "models" / "gpt2-medium")
    return root


@pytest.mark.slow
@pytest.mark.data_files("gpt2.tiktoken", "SMSSpamCollection")
@pytest.mark.parametrize("chapter", ["ch06-classify", "appE-lora"])
def test_ch06_and_appE_split_pad_and_train(gpt2_folders, chapter, tmp_path):
    work = tmp_path / "work"
    shutil.copytree(gpt2_folders / "models", work / "models")
    cli("train", str(BOOK / f"{chapter}.yaml"), *TINY, *QUICK, cwd=work)
    run = work / "runs" / f"book-{chapter.split('-')[0]}"
    info = json.loads((run / "classifier.json").read_text())
    assert info["splits"] == {"train": 1045, "val": 149, "test": 300}  # 747 + 747, 70/10/20
    assert info["length"] == 120  # padded to the longest training message
    results = json.loads((run / "results.json").read_text())
    assert results["examples"] == info["splits"] and 0.0 <= results["test_accuracy"] <= 1.0
    if chapter == "appE-lora":  # LoRA r=16 on every Linear layer of the tiny model, head included
        lora = 2 * (4 * 16 * (64 + 64) + 16 * (64 + 256) + 16 * (256 + 64)) + 16 * (64 + 2)
        assert start_event(run)["params"] == lora


@pytest.mark.parametrize(("chapter", "trainable"), [("appE-lora", 2_666_528),
                                                    ("ch06-classify", 7_090_946)])
def test_trainable_parameters_at_gpt2_small(chapter, trainable):
    """Appendix E's 2,666,528 LoRA parameters; chapter 6's last block, final norm and head."""
    config = load_config(BOOK / f"{chapter}.yaml")
    model = build_model(config, device="meta")
    apply_trainable(model, config.train.trainable, "last_block")
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == trainable


@pytest.mark.slow
@pytest.mark.data_files("gpt2.tiktoken", "instruction-data.json")
def test_ch07_splits_collate_and_responses(gpt2_folders, tmp_path):
    inputs, targets = collate([[0, 1, 2, 3, 4], [5, 6], [7, 8, 9]], EOT)  # the book's example
    assert targets.tolist() == [[1, 2, 3, 4, EOT], [6, EOT, -100, -100, -100],
                                [8, 9, EOT, -100, -100]]
    assert inputs.tolist()[1] == [5, 6, EOT, EOT, EOT]
    work = tmp_path / "work"
    shutil.copytree(gpt2_folders / "models", work / "models")
    cli("train", str(BOOK / "ch07-instruct.yaml"), *TINY, *QUICK,
        "--set", "train.trainer.response_tokens=2", cwd=work)
    run = work / "runs" / "book-ch07"
    results = json.loads((run / "results.json").read_text())
    assert results["test_records"] == 110  # the book's test split: records 935-1044
    responses = json.loads((run / "responses.json").read_text())
    assert len(responses) == 110 and "model_response" in responses[0]


@pytest.mark.slow
@pytest.mark.data_files("gpt2.tiktoken", "the-verdict.txt")
def test_ch03_attention_pictures(tmp_path):
    cli("train", str(BOOK / "ch03-attention.yaml"), *QUICK, cwd=tmp_path)
    out = cli("inspect", "attention", "runs/book-ch03", "--prompt",
              "Your journey starts with one step", "--out", "attention.png", cwd=tmp_path).stdout
    assert "2 layers x 4 heads" in out
    assert (tmp_path / "attention.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
@pytest.mark.data_files("gpt2.tiktoken", "the-verdict.txt")
def test_appA_two_processes(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
         "--master_addr=127.0.0.1", f"--master_port={free_port()}", "-m", "llmbricks", "train",
         str(BOOK / "appA-ddp.yaml"), *QUICK],
        cwd=tmp_path, env=train_env(tmp_path), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("done: ") == 1  # rank 0 alone reports
    start = start_event(tmp_path / "runs" / "book-appA")
    assert start["world_size"] == 2 and start["tokens_per_step"] == 2 * 8 * 64
