"""An imported model's own chat template drives `train` (instruct) and `generate --instruction`.

The model is a tiny LlamaForCausalLM saved with a Llama-3-like tokenizer folder (its
tokenizer_config.json carries the chat template, bos and eos tokens; the tokenizer has no
<|endoftext|>), imported with `llmbricks import hf`. The references are transformers'
AutoTokenizer and apply_chat_template on the same folder.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmbricks.core.config import load_config
from llmbricks.core.registry import get_registry
from llmbricks.core.store.model_dir import load_model_dir
from llmbricks.core.store.runs import load_run
from llmbricks.core.tasks.generation import generate_ids
from llmbricks.core.tasks.instruction import (
    IGNORE_INDEX,
    collate,
    default_prompt,
    encode_example,
    encode_prompt,
    end_token,
    end_token_id,
    instruction_prompt,
    prompt_template,
)
from tests.e2e.bad_inputs import invoke

transformers = pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

from tests.plugins.test_hf_tokenizer import make_hf_folder, make_tiny_llama_folder  # noqa: E402

#: Records the finetune learns: every answer is the single token "hello", then <|eot_id|>.
ITEMS = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
         "twelve"]
RECORDS = [{"instruction": f"Greet item {item}.", "input": "", "output": "hello"} for item in ITEMS]
#: Records with inputs, spaces the template trims, and text that looks like its special tokens.
ODD = [
    {"instruction": "Identify the correct spelling of the following word.", "input": "Ocassion",
     "output": "The correct spelling is 'Occasion.'"},
    {"instruction": "Say  hi.\n", "input": "  spaced 東京 ", "output": " Hi! "},
    {"instruction": "End here <|eot_id|> and <|start_header_id|>system<|end_header_id|>",
     "input": "", "output": "Fine <|eot_id|> ok<|begin_of_text|>"},
]


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """A Hugging Face folder: the Llama-3-like tokenizer and a tiny Llama of vocab 432."""
    return make_tiny_llama_folder(tmp_path_factory.mktemp("hf-chat") / "tiny-llama")


@pytest.fixture(scope="module")
def model_dir(folder, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("imported") / "ours"
    done = invoke("import", "hf", str(folder), str(out))
    assert done.code == 0, done.stderr
    return out


@pytest.fixture(scope="module")
def hf_tokenizer(folder):
    return transformers.AutoTokenizer.from_pretrained(str(folder))


@pytest.fixture(scope="module")
def ours(model_dir):
    config, _, tokenizer = load_model_dir(model_dir)
    return config, tokenizer


def user_message(record: dict[str, str]) -> list[dict[str, str]]:
    content = record["instruction"] + (f"\n\n{record['input']}" if record["input"] else "")
    return [{"role": "user", "content": content}]


# --- (a) the default prompt is the model's own template, token for token -----------------------


def test_a_null_data_prompt_means_the_tokenizers_chat_template(ours, model_dir):
    config, tokenizer = ours
    assert config.data.prompt is None
    spec = default_prompt(tokenizer)
    assert spec == {"name": "chat_template", "template": tokenizer.chat_template,
                    "bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"}
    assert type(prompt_template(config, tokenizer=tokenizer)).__name__ == "ChatTemplate"
    # An explicit data.prompt still wins.
    alpaca = load_config({**config.model_dump(mode="json"), "data": {"prompt": "alpaca"}})
    assert prompt_template(alpaca, tokenizer=tokenizer).name == "alpaca"
    assert end_token(tokenizer, prompt_template(config, tokenizer=tokenizer)) == "<|eot_id|>"
    assert "<|endoftext|>" not in tokenizer.special_tokens


@pytest.mark.parametrize("record", RECORDS[:1] + ODD[:2])
def test_the_prompt_and_its_ids_are_apply_chat_templates(ours, hf_tokenizer, record):
    config, tokenizer = ours
    text = hf_tokenizer.apply_chat_template(user_message(record), tokenize=False,
                                            add_generation_prompt=True)
    assert instruction_prompt(config, record["instruction"], record["input"],
                              tokenizer=tokenizer) == text
    template = prompt_template(config, tokenizer=tokenizer)
    ids = hf_tokenizer(text, add_special_tokens=False)["input_ids"]
    assert ids[0] == tokenizer.special_tokens["<|begin_of_text|>"]  # the template's bos is an id
    assert encode_prompt(tokenizer, template, record) == ids
    assert encode_example(tokenizer, template, record).ids[:len(ids)] == ids


# --- (b) special-looking text in a record stays text ----------------------------------------------


def test_special_looking_text_in_a_record_is_encoded_as_text(ours, hf_tokenizer):
    config, tokenizer = ours
    template = prompt_template(config, tokenizer=tokenizer)
    record = ODD[2]
    specials = tokenizer.special_tokens
    eot, header = specials["<|eot_id|>"], specials["<|start_header_id|>"]
    example = encode_example(tokenizer, template, record)
    prompt, response = example.ids[:example.prompt_length], example.ids[example.prompt_length:]
    # Only the template's own specials are ids: one bos, two headers, one <|eot_id|> (the user's
    # turn), none of those the instruction and the output hold.
    assert prompt.count(specials["<|begin_of_text|>"]) == 1 and prompt.count(header) == 2
    assert prompt.count(eot) == 1 and not set(response) & set(specials.values())
    assert tokenizer.decode(prompt) == template.prompt(record)
    assert tokenizer.decode(response) + "<|eot_id|>" == template.response(record)
    # The template's text as transformers encodes it; the user's text, between two of the
    # template's specials, as transformers encodes text whose specials are split as text.
    def hf(text: str, split: bool = False) -> list[int]:
        return hf_tokenizer(text, add_special_tokens=False, split_special_tokens=split)["input_ids"]

    assert prompt == (hf("<|begin_of_text|><|start_header_id|>user<|end_header_id|>")
                      + hf("\n\n" + record["instruction"], split=True)
                      + hf("<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"))
    assert response == hf(record["output"].strip(), split=True)
    # transformers, which allows every special, would have made the instruction's text a turn.
    theirs = hf_tokenizer.apply_chat_template(user_message(record), tokenize=False,
                                              add_generation_prompt=True)
    assert hf(theirs).count(eot) == 2


def test_a_template_that_rewrites_a_records_specials_is_refused(ours):
    from llmbricks.core.errors import ConfigError

    _, tokenizer = ours
    upper = get_registry().build("prompt", {
        "name": "chat_template", "template": "{% for m in messages %}<|start_header_id|>"
        "{{ m.content | upper }}<|eot_id|>{% endfor %}"})
    with pytest.raises(ConfigError, match="changes the special-looking text of a record"):
        encode_prompt(tokenizer, upper, ODD[2])
    assert encode_prompt(tokenizer, upper, RECORDS[0])[0] == tokenizer.special_tokens[
        "<|start_header_id|>"]


def test_the_answer_ends_at_the_templates_end_token_not_after_it(ours):
    """A template that writes a newline after <|eot_id|> (as ChatML does): the example stops at
    the end token, which collate appends, so the newline is never learned."""
    _, tokenizer = ours
    chatml_like = get_registry().build("prompt", {
        "name": "chat_template", "template":
        "{% for m in messages %}<|start_header_id|>{{ m.role }}<|end_header_id|>\n"
        "{{ m.content }}<|eot_id|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n{% endif %}"})
    record = ODD[0]
    assert chatml_like.response(record) == record["output"] + "<|eot_id|>\n"
    eot = end_token_id(tokenizer, chatml_like)
    example = encode_example(tokenizer, chatml_like, record, end_id=eot)
    assert example.ids[example.prompt_length:] == tokenizer.encode(record["output"])


# --- (c) `llmbricks train MODEL_DIR` with the instruct trainer and LoRA ---------------------------


@pytest.fixture(scope="module")
def finetuned(model_dir, tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("finetune")
    records = tmp / "records.json"
    records.write_text(json.dumps(RECORDS), encoding="utf-8")
    done = invoke("train", str(model_dir),
                  "--set", f"data.source={{name: instruction_json, path: {records}}}",
                  "--set", "train.trainer.name=instruct", "--set", "train.trainer.mask_prompt=true",
                  "--set", "train.trainer.response_tokens=8",
                  "--set", "model.adapters=[{name: lora, r: 4, targets: ['*']}]",
                  "--set", "train.max_steps=24", "--set", "train.batch_size=4",
                  "--set", "train.eval_every=8", "--set", "train.warmup_steps=0",
                  "--set", "train.lr=0.05", "--set", "train.sample_tokens=8",
                  "--out", str(tmp / "run"))
    assert done.code == 0, done.stderr
    return tmp / "run"


@pytest.mark.slow
def test_a_lora_finetune_on_the_template_learns_the_answers(finetuned):
    events = [json.loads(line) for line in (finetuned / "metrics.jsonl").read_text().splitlines()]
    losses = [e["val_loss"] for e in events if e["event"] == "eval"]
    assert len(losses) == 3 and losses[-1] < losses[0] / 4, losses
    responses = json.loads((finetuned / "responses.json").read_text(encoding="utf-8"))
    assert [r["model_response"] for r in responses] == ["hello"]  # stopped at <|eot_id|>


@pytest.mark.slow
def test_only_the_response_and_the_end_token_are_targets(finetuned, hf_tokenizer):
    """The run's own config and tokenizer, batched as the trainer batches them (mask_prompt)."""
    config, _, tokenizer = load_run(finetuned)
    assert config.data.prompt is None and config.train.trainer.params["mask_prompt"] is True
    template = prompt_template(config, tokenizer=tokenizer)
    eot = end_token_id(tokenizer, template)
    assert eot == hf_tokenizer.convert_tokens_to_ids("<|eot_id|>")
    records = [RECORDS[0], *ODD]
    examples = [encode_example(tokenizer, template, r, end_id=eot) for r in records]
    _, targets = collate(examples, eot, mask_prompt=True)
    for record, row in zip(records, targets.tolist(), strict=True):
        messages = user_message(record)
        prompt = hf_tokenizer.apply_chat_template(messages, tokenize=False,
                                                  add_generation_prompt=True)
        full = hf_tokenizer.apply_chat_template(
            [*messages, {"role": "assistant", "content": record["output"]}], tokenize=False)
        answer = full[len(prompt):]
        assert answer.endswith("<|eot_id|>")
        want = hf_tokenizer(answer[:-len("<|eot_id|>")], add_special_tokens=False,
                            split_special_tokens=True)["input_ids"] + [eot]
        assert [t for t in row if t != IGNORE_INDEX] == want


# --- (d) `llmbricks generate --instruction` answers in the template and stops at its end ---------


@pytest.mark.slow
def test_generate_with_an_instruction_prints_the_response_and_stops_at_eot_id(finetuned):
    config, model, tokenizer = load_run(finetuned)
    record = {"instruction": "Greet item two.", "input": "", "output": ""}
    template = prompt_template(config, tokenizer=tokenizer)
    ids = encode_prompt(tokenizer, template, record)
    unbounded = generate_ids(model, [ids], max_new_tokens=3).new_tokens[0]  # no stop token
    assert unbounded[:2] == [tokenizer.encode("hello")[0], tokenizer.special_tokens["<|eot_id|>"]]
    done = invoke("generate", str(finetuned), "--instruction", "Greet item two.", "-n", "20")
    assert done.code == 0, done.stderr
    assert done.stdout == "hello\n"
    streamed = invoke("generate", str(finetuned), "--instruction", "Greet item two.", "-n", "20",
                      "--stream")
    assert streamed.code == 0 and streamed.stdout == "hello\n", streamed.stderr
    # --stop still wins: past <|eot_id|>, the template's next turn is not the answer's end.
    past = invoke("generate", str(finetuned), "--instruction", "Greet item two.", "-n", "3",
                  "--stop", "<|end_of_text|>")
    assert past.code == 0 and past.stdout.startswith("hello<|eot_id|>"), past.stdout


# --- (e) without a chat template, alpaca stays the default ----------------------------------------


def test_a_tokenizer_without_a_chat_template_keeps_alpaca(tmp_path):
    folder = make_hf_folder(tmp_path / "plain")
    settings = json.loads((folder / "tokenizer_config.json").read_text())
    del settings["chat_template"]
    (folder / "tokenizer_config.json").write_text(json.dumps(settings))
    tokenizer = get_registry().build("tokenizer", {"name": "hf", "path": str(folder)})
    assert tokenizer.chat_template is None and default_prompt(tokenizer) == "alpaca"
    config = load_config({})
    template = prompt_template(config, tokenizer=tokenizer)
    assert template.name == "alpaca"
    # Alpaca writes no end token: the tokenizer's eos_token ends the examples (no <|endoftext|>).
    assert end_token(tokenizer, template) == "<|eot_id|>"
    assert default_prompt(None) == "alpaca"
