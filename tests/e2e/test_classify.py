"""Classification finetuning as a user runs it: train, classify, eval, resume, init_from, LoRA."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from tests.conftest import run_cli
from tests.e2e.train_fixtures import WORDS, events, tiny_config, train, train_env

# Two classes told apart by their words, all from the tiny corpus (its char tokenizer knows them).
SEA = ("sea", "birds", "sang", "while", "dawn", "see")
LAND = ("king", "queen", "rode", "far", "hills", "gold")
assert set(SEA + LAND) <= set(WORDS)


def rows_csv(path: Path, per_class: int = 40) -> Path:
    rng = random.Random(0)
    lines = ["text,label"]
    for i in range(per_class * 2):
        label, words = ("sea", SEA) if i % 2 else ("land", LAND)
        lines.append(f"{' '.join(rng.choice(words) for _ in range(rng.randint(2, 6)))},{label}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def classify_config(tmp: Path, name: str = "clf", model: dict | None = None, **train: object) -> Path:
    data = {
        "name": name,
        "model": {"tokenizer": "char", "context_length": 16, "emb_dim": 32, "n_layers": 2,
                  "n_heads": 2, "dropout": 0.0,
                  "head": {"name": "classification", "pooling": "last_nonpad"}, **(model or {})},
        "data": {"source": {"name": "labeled_text", "path": str(rows_csv(tmp / "rows.csv"))}},
        "train": {"trainer": "classify", "max_steps": 30, "batch_size": 8, "lr": 3e-3,
                  "warmup_steps": 0, "schedule": "constant", "eval_every": 10, "eval_batches": 2,
                  "log_every": 5, "trainable": "all", "loggers": ["jsonl"], **train},
        "seed": 3,
    }
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def cli(*args: str, tmp: Path, stdin: str | None = None):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "llmbricks", *args], cwd=tmp, input=stdin,
                          env=train_env(tmp), capture_output=True, text=True, timeout=300)


def one_line_error(result, code: int, expected: str) -> None:
    assert result.returncode == code, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], result.stderr


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("classify")
    result = train(str(classify_config(tmp)), "--out", "clf", tmp_path=tmp)
    assert result.returncode == 0, result.stderr
    return tmp / "clf"


def test_a_run_records_labels_padding_and_final_results(run):
    info = json.loads((run / "classifier.json").read_text())
    assert info["labels"] == ["land", "sea"] and info["padding"] == "longest"
    assert info["splits"] == {"train": 56, "val": 8, "test": 16} and 1 <= info["length"] <= 16
    results = json.loads((run / "results.json").read_text())
    assert results["test_accuracy"] >= 0.8  # two easy classes
    assert results["examples"] == info["splits"] and results["labels"] == ["land", "sea"]
    assert sum(map(sum, results["test"]["confusion"])) == 16
    assert set(results["test"]["f1"]) == {"land", "sea"}
    logged = events(run)
    assert [e for e in logged if e["event"] == "results"][0]["test_accuracy"] == \
        results["test_accuracy"]
    evals = [e for e in logged if e["event"] == "eval"]
    assert len(evals) == 3 and all("val_accuracy" in e and "train_accuracy" in e for e in evals)


def test_classify_texts_stdin_and_json(run):
    tmp = run.parent
    sea, land = " ".join(SEA[:4]), " ".join(LAND[:4])
    result = cli("classify", str(run), sea, land, tmp=tmp)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[0] == "sea" and lines[1].split()[0] == "land"
    assert lines[0].endswith(sea) and "%" in lines[0]
    piped = cli("classify", str(run), "--json", tmp=tmp, stdin=f"{sea}\n\n{land}\n")
    assert piped.returncode == 0, piped.stderr
    rows = json.loads(piped.stdout)
    assert [r["label"] for r in rows] == ["sea", "land"] and [r["text"] for r in rows] == [sea, land]
    assert all(abs(sum(r["probabilities"].values()) - 1) < 1e-5 for r in rows)
    assert all(r["probability"] == max(r["probabilities"].values()) for r in rows)


def test_the_python_api_matches_the_cli(run):
    from llmbricks.core.tasks.classifier import classify

    predictions = classify(run, [" ".join(SEA[:4]), " ".join(LAND[:4])])
    assert [p.label for p in predictions] == ["sea", "land"]
    assert 0.5 < predictions[0].probability <= 1.0


def test_eval_reports_test_accuracy_and_generate_refuses(run):
    tmp = run.parent
    evaluated = cli("eval", str(run), "--json", tmp=tmp)
    assert evaluated.returncode == 0, evaluated.stderr
    report = json.loads(evaluated.stdout)
    results = json.loads((run / "results.json").read_text())
    assert report["examples"] == 16 and report["accuracy"] == results["test_accuracy"]
    assert report["confusion"] == results["test"]["confusion"]
    generated = cli("generate", str(run), "--prompt", "the", tmp=tmp)
    one_line_error(generated, 2, "gives one output per text, not next-token logits")


@pytest.mark.slow
def test_classify_on_a_language_model_is_one_line(tmp_path):
    config = tiny_config(tmp_path, max_steps=2, eval_every=2, checkpoint_every=2)
    assert train(str(config), "--out", "lm", tmp_path=tmp_path).returncode == 0
    result = cli("classify", str(tmp_path / "lm"), "hello", tmp=tmp_path)
    one_line_error(result, 2, "is not a classifier (its head is 'lm')")


@pytest.mark.parametrize("sets,expected", [
    (["train.batch_size=8", "train.trainer.padding=none"],
     "padding: none feeds one text per batch (no padding) but train.batch_size is 8; set "
     "--set train.batch_size=1"),
    (["model.head.num_classes=3"],
     "model.head.num_classes is 3 but the data has 2 labels (land, sea); set "
     "--set model.head.num_classes=2"),
    (["model.head=lm"], "classify needs a classification head, but model.head is 'lm'"),
    (["data.source.label_column=kind"], "no column 'kind' for label_column"),
])
def test_bad_input_is_one_line(tmp_path, sets, expected):
    args = [a for s in sets for a in ("--set", s)]
    result = train(str(classify_config(tmp_path)), "--out", "bad", *args, tmp_path=tmp_path)
    one_line_error(result, 2, expected)  # the config or the user's data must change: exit 2
    assert not (tmp_path / "bad").exists()  # nothing half-made is left behind


@pytest.mark.slow
def test_padding_none_trains_one_text_at_a_time(tmp_path):
    config = classify_config(tmp_path, max_steps=4, batch_size=1, eval_every=4,
                             trainer={"name": "classify", "padding": "none"})
    assert train(str(config), "--out", "none", tmp_path=tmp_path).returncode == 0
    info = json.loads((tmp_path / "none" / "classifier.json").read_text())
    assert info["padding"] == "none" and info["length"] is None
    assert cli("classify", str(tmp_path / "none"), "sea birds", tmp=tmp_path).returncode == 0


@pytest.mark.slow
def test_resume_ends_bitwise_identical_to_an_uninterrupted_run(tmp_path):
    config = str(classify_config(tmp_path, max_steps=12, eval_every=6))
    assert train(config, "--out", "straight", tmp_path=tmp_path).returncode == 0
    assert train(config, "--out", "halves", "--set", "train.max_steps=6",
                 tmp_path=tmp_path).returncode == 0
    resumed = train(config, "--out", "halves", "--resume", tmp_path=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    ours = load_file(tmp_path / "halves/checkpoints/step-12/model.safetensors")
    theirs = load_file(tmp_path / "straight/checkpoints/step-12/model.safetensors")
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)
    assert json.loads((tmp_path / "halves/results.json").read_text()) == \
        json.loads((tmp_path / "straight/results.json").read_text())


@pytest.mark.slow
def test_lora_classify_from_a_pretrained_base(tmp_path):
    base_config = tiny_config(tmp_path, max_steps=10, eval_every=10, checkpoint_every=10)
    assert train(str(base_config), "--out", "base", tmp_path=tmp_path).returncode == 0
    config = classify_config(tmp_path, "lora", max_steps=20, eval_every=20, trainable="auto",
                             init_from=str(tmp_path / "base"), lr=0.01,
                             model={"adapters": [{"name": "lora", "r": 4, "alpha": 8}],
                                    "dropout": 0.1})
    result = train(str(config), "--out", "lora", tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    step = tmp_path / "lora/checkpoints/step-20"
    adapter = load_file(step / "adapter.safetensors")
    assert adapter and all(k.endswith(("lora_A", "lora_B")) for k in adapter)
    base = load_file(tmp_path / "base/checkpoints/step-10/model.safetensors")
    after = load_file(step / "model.safetensors")
    body = [k for k in after if not k.startswith("head.")]
    assert body and all(torch.equal(after[k], base[k]) for k in body)  # the base is frozen
    assert {"head.proj.weight", "head.proj.bias"} <= after.keys()  # the new head trained
    # The base run's tokenizer was used, not one learned from the labeled rows.
    assert (tmp_path / "lora/tokenizer/tokenizer.json").read_text() == \
        (tmp_path / "base/tokenizer/tokenizer.json").read_text()
    out = cli("classify", str(tmp_path / "lora"), "sea birds", "--json", tmp=tmp_path)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)[0]["label"] in ("land", "sea")
    # Merged, the classifier keeps its labels and padding: the same predictions, no adapter.
    merged = cli("model", "merge", str(tmp_path / "lora"), str(tmp_path / "merged"), tmp=tmp_path)
    assert merged.returncode == 0, merged.stderr
    assert (tmp_path / "merged/classifier.json").read_text() == \
        (tmp_path / "lora/classifier.json").read_text()
    again = cli("classify", str(tmp_path / "merged"), "sea birds", "--json", tmp=tmp_path)
    assert again.returncode == 0, again.stderr
    before, after = json.loads(out.stdout)[0], json.loads(again.stdout)[0]
    assert after["label"] == before["label"]
    assert after["probability"] == pytest.approx(before["probability"], abs=1e-5)


@pytest.mark.slow
@pytest.mark.data_files("gpt2.tiktoken")
def test_init_from_an_imported_gpt2_directory(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    hf = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=2, n_positions=64))
    hf.save_pretrained(tmp_path / "hf", safe_serialization=True)
    imported = run_cli("import", "gpt2", str(tmp_path / "hf"), str(tmp_path / "gpt2"))
    assert imported.returncode == 0, imported.stderr
    source = {"name": "labeled_text", "path": str(rows_csv(tmp_path / "rows.csv"))}
    result = train(str(tmp_path / "gpt2"), "--out", "spam", "--set", "train.trainer=classify",
                   "--set", "model.head=classification", "--set", f"data.source={json.dumps(source)}",
                   "--set", "train.max_steps=2", "--set", "train.eval_every=2",
                   "--set", "train.batch_size=4", "--set", "train.loggers=[jsonl]",
                   tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    info = json.loads((tmp_path / "spam/classifier.json").read_text())
    assert info["pad_id"] == 50256  # GPT-2's <|endoftext|>: the book's padding
    weights = load_file(tmp_path / "spam/checkpoints/step-2/model.safetensors")
    embedding = next(k for k in weights if k.startswith("embedding."))
    wte = hf.transformer.wte.weight.detach()
    assert torch.equal(weights[embedding], wte)  # last_block: the embedding stayed as imported
    assert weights["head.proj.weight"].shape == (2, 32)
    out = cli("classify", str(tmp_path / "spam"), "hello there", tmp=tmp_path)
    assert out.returncode == 0, out.stderr
