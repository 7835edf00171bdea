"""Instruction finetuning through the CLI: a tiny GPT-2-vocabulary model on a slice of the book's data.

The runs use GPT-2's tokenizer (tiktoken, from $LLMBRICKS_DATA_DIR) because the trainer pads and
stops with its <|endoftext|>; a 2-layer, 32-dim model keeps each run to a few seconds.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from tests.conftest import need_data
from tests.e2e.train_fixtures import corpus, events, train

MODEL = {"tokenizer": {"name": "tiktoken", "encoding": "gpt2"}, "context_length": 64,
         "emb_dim": 32, "n_layers": 2, "n_heads": 2, "dropout": 0.0}


@pytest.fixture(scope="module")
def book_records() -> list[dict[str, str]]:
    path = need_data("instruction-data.json", "gpt2.tiktoken") / "instruction-data.json"
    return json.loads(path.read_text(encoding="utf-8"))


def write_config(tmp: Path, name: str, records: Path | None, **train_fields: object) -> Path:
    source = {"name": "instruction_json", "path": str(records)} if records else "instruction_data"
    trainer = train_fields.pop("trainer", {"name": "instruct", "response_tokens": 4})
    data = {"name": name, "model": MODEL, "data": {"source": source},
            "train": {"trainer": trainer, "max_steps": 30, "batch_size": 4, "lr": 3e-3,
                      "warmup_steps": 2, "eval_every": 10, "eval_batches": 2, "log_every": 1,
                      "loggers": ["jsonl"], **train_fields},
            "seed": 5}
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def instruct_run(tmp_path_factory, book_records) -> tuple[Path, list[dict[str, str]]]:
    tmp = tmp_path_factory.mktemp("instruct")
    records = book_records[:60]  # 51 train, 6 val (10%), 3 test (5%)
    path = tmp / "records.json"
    path.write_text(json.dumps(records), encoding="utf-8")
    result = train(str(write_config(tmp, "tiny", path)), "--out", "run", tmp_path=tmp)
    assert result.returncode == 0, result.stderr
    return tmp / "run", records


@pytest.mark.slow
def test_the_loss_falls(instruct_run):
    run, _ = instruct_run
    logged = events(run)
    losses = [e["loss"] for e in logged if e["event"] == "step"]
    evals = [e for e in logged if e["event"] == "eval"]
    assert len(losses) == 30 and len(evals) == 3
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.5
    assert evals[-1]["train_loss"] < evals[0]["train_loss"]
    assert evals[-1]["val_loss"] < evals[0]["val_loss"]
    # Samples continue the first validation record's prompt (no train.sample_prompt).
    samples = (run / "samples.txt").read_text(encoding="utf-8")
    assert "### Instruction:\n" in samples and "### Response:\n" in samples


@pytest.mark.slow
def test_responses_json_holds_every_test_record_with_its_answer(instruct_run):
    run, records = instruct_run
    responses = json.loads((run / "responses.json").read_text(encoding="utf-8"))
    assert len(responses) == 3
    assert [{k: e[k] for k in ("instruction", "input", "output")} for e in responses] == records[57:]
    assert all(set(e) == {"instruction", "input", "output", "model_response"} for e in responses)
    assert all(isinstance(e["model_response"], str) and e["model_response"] == e["model_response"].strip()
               for e in responses)
    results = json.loads((run / "results.json").read_text(encoding="utf-8"))
    assert results["responses"] == "responses.json" and results["responses_count"] == 3
    assert results["test_records"] == 3 and math.isfinite(results["test_loss"])
    logged = [e for e in events(run) if e["event"] == "results"]
    assert len(logged) == 1 and logged[0]["test_loss"] == results["test_loss"]


@pytest.mark.slow
def test_generate_with_an_instruction_answers_as_responses_json(instruct_run, cli):
    run, _ = instruct_run
    entry = json.loads((run / "responses.json").read_text(encoding="utf-8"))[0]
    args = ["generate", str(run), "--instruction", entry["instruction"], "-n", "4"]
    if entry["input"]:
        args += ["--input", entry["input"]]
    result = cli(*args)
    assert result.returncode == 0, result.stderr
    assert result.stdout == entry["model_response"] + "\n"
    streamed = cli(*args, "--stream")  # the same response, from its first visible character
    assert streamed.returncode == 0, streamed.stderr
    assert streamed.stdout.strip() == entry["model_response"]
    assert streamed.stdout.lstrip() == streamed.stdout or not entry["model_response"]
    both = cli("generate", str(run), "--instruction", "x", "--prompt", "y")
    assert both.returncode == 2 and "one of the two" in both.stderr


def test_a_record_without_output_is_one_line_naming_it(tmp_path, book_records):
    broken = [dict(r) for r in book_records[:8]]
    del broken[3]["output"]
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(broken), encoding="utf-8")
    result = train(str(write_config(tmp_path, "broken", path)), "--out", "run", tmp_path=tmp_path)
    assert result.returncode == 2  # the user's data must change (InputError)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "record 3 lacks the key 'output'" in lines[0] and str(path) in lines[0]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()  # a run that failed while setting up leaves nothing


@pytest.mark.parametrize(("model", "trainer", "message"), [
    ({"tokenizer": {"name": "char", "chars": "abcdefghijklmnopqrstuvwxyz "}, "vocab_size": "auto"},
     {"name": "instruct"}, "has no <|endoftext|> special token"),
    ({}, {"name": "instruct", "allowed_max_length": 65}, "allowed_max_length: 65 is above "
     "model.context_length 64"),
])
def test_config_mistakes_are_one_line_exit_2(tmp_path, book_records, model, trainer, message):
    path = tmp_path / "records.json"
    path.write_text(json.dumps(book_records[:8]), encoding="utf-8")
    config = write_config(tmp_path, "bad", path, trainer=trainer)
    data = yaml.safe_load(config.read_text(encoding="utf-8"))
    data["model"].update(model)
    config.write_text(yaml.safe_dump(data), encoding="utf-8")
    result = train(str(config), "--out", "run", tmp_path=tmp_path)
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr


@pytest.mark.slow
def test_init_from_a_pretrain_run(tmp_path, book_records):
    text = corpus(tmp_path / "corpus.txt")
    pre = {"name": "pre", "model": MODEL, "data": {"source": {"name": "text", "path": str(text)}},
           "train": {"max_steps": 4, "batch_size": 4, "lr": 3e-3, "warmup_steps": 0,
                     "eval_every": 4, "eval_batches": 1, "loggers": ["jsonl"]}, "seed": 1}
    (tmp_path / "pre.yaml").write_text(yaml.safe_dump(pre), encoding="utf-8")
    assert train("pre.yaml", "--out", "pre", tmp_path=tmp_path).returncode == 0
    path = tmp_path / "records.json"
    path.write_text(json.dumps(book_records[:40]), encoding="utf-8")
    # One step at a vanishing learning rate: the finetune's weights are the pretrained ones.
    config = write_config(tmp_path, "ft", path, init_from=str(tmp_path / "pre"), max_steps=1,
                          lr=1e-9, warmup_steps=0, eval_every=1,
                          trainer={"name": "instruct", "response_tokens": 2})
    result = train(str(config), "--out", "ft", tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    base = load_file(tmp_path / "pre" / "checkpoints" / "step-4" / "model.safetensors")
    tuned = load_file(tmp_path / "ft" / "checkpoints" / "step-1" / "model.safetensors")
    assert base.keys() == tuned.keys()
    assert all(torch.allclose(base[k], tuned[k], atol=1e-6) for k in base)
    assert len(json.loads((tmp_path / "ft" / "responses.json").read_text())) == 2


@pytest.mark.slow
def test_without_test_records_the_results_say_so(tmp_path, book_records):
    path = tmp_path / "records.json"
    path.write_text(json.dumps(book_records[:20]), encoding="utf-8")
    config = write_config(tmp_path, "notest", path, max_steps=2, eval_every=2,
                          trainer={"name": "instruct", "split": [0.8, 0.2, 0.0]})
    result = train(str(config), "--out", "run", tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results == {"test_loss": None, "test_records": 0, "responses": "responses.json",
                       "responses_count": 0}
    assert json.loads((tmp_path / "run" / "responses.json").read_text()) == []


def test_the_example_config_splits_the_books_records_935_110_55():
    from llmbricks.core.config import load_config
    from tests.conftest import EXAMPLES

    config = load_config(EXAMPLES / "configs" / "instruct.yaml")
    assert config.train.trainer.name == "instruct" and config.data.source.name == "instruction_data"
    assert config.train.trainer.params["split"] == [0.85, 0.1, 0.05]
    assert config.data.prompt.name == "alpaca" and config.model.tokenizer.name == "tiktoken"


def test_a_streamed_response_starts_at_its_first_visible_character(monkeypatch):
    from click.testing import CliRunner

    from llmbricks.cli import generate as generate_cli
    from llmbricks.core.config import load_config
    from llmbricks.core.tasks import generation

    pieces = [" ", "\n  ", "The", " answer.", " \n"]

    def fake_generate(model, tokenizer, prompt, *, on_text=None, **kwargs):
        assert prompt.endswith("### Response:\n")  # the run's template made the prompt
        for piece in pieces:
            if on_text is not None:
                on_text(0, piece)
        return "".join(pieces)

    monkeypatch.setattr(generation, "generate", fake_generate)
    monkeypatch.setattr(generate_cli, "_load", lambda *args: (load_config({}), None, None))
    runner = CliRunner()
    streamed = runner.invoke(generate_cli.generate, ["run", "--instruction", "Q?", "--stream"])
    plain = runner.invoke(generate_cli.generate, ["run", "--instruction", "Q?"])
    assert streamed.exit_code == 0 and plain.exit_code == 0, streamed.output + plain.output
    assert streamed.output == "The answer. \n\n"
    assert plain.output == "The answer.\n"
