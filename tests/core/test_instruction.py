"""Instruction finetuning's machinery: the book's collate and masking, splits, encoding, batches."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from llmbricks.core.build import build_model
from llmbricks.core.config import load_config
from llmbricks.core.errors import ConfigError, DataError
from llmbricks.core.interfaces import PromptTemplate
from llmbricks.core.registry import get_registry
from llmbricks.core.tasks.instruction import (
    IGNORE_INDEX,
    Example,
    InstructionBatches,
    collate,
    default_prompt,
    encode_example,
    encode_prompt,
    end_of_text_id,
    end_token,
    end_token_id,
    generate_responses,
    instruction_loss,
    prompt_template,
    split_records,
    template_end_token,
)
from tests.conftest import need_data

EOT = 50256


@pytest.fixture(scope="module")
def records() -> list[dict[str, str]]:
    need_data("instruction-data.json")
    return list(get_registry().build("datasource", "instruction_data"))


@pytest.fixture(scope="module")
def gpt2():
    need_data("gpt2.tiktoken")
    return get_registry().build("tokenizer", {"name": "tiktoken", "encoding": "gpt2"})


# --- collate: the book's custom_collate_fn ----------------------------------------------------


def test_collate_reproduces_the_books_example():
    inputs, targets = collate([[0, 1, 2, 3, 4], [5, 6], [7, 8, 9]], EOT)
    assert inputs.tolist() == [[0, 1, 2, 3, 4], [5, 6, EOT, EOT, EOT], [7, 8, 9, EOT, EOT]]
    assert targets.tolist() == [[1, 2, 3, 4, EOT], [6, EOT, -100, -100, -100],
                                [8, 9, EOT, -100, -100]]
    assert inputs.dtype == targets.dtype == torch.long


def test_collate_truncates_to_allowed_max_length():
    inputs, targets = collate([[0, 1, 2, 3, 4], [5, 6], [7, 8, 9]], EOT, allowed_max_length=3)
    assert inputs.tolist() == [[0, 1, 2], [5, 6, EOT], [7, 8, 9]]
    assert targets.tolist() == [[1, 2, 3], [6, EOT, -100], [8, 9, EOT]]
    # A limit above the batch's width changes nothing.
    wide = collate([[0, 1, 2, 3, 4], [5, 6]], EOT, allowed_max_length=100)
    assert [t.shape for t in wide] == [(2, 5), (2, 5)]


def test_mask_prompt_ignores_the_prompt_targets_only():
    # Prompts of 3, 1 and 2 tokens: targets that are prompt tokens become -100 (exercise 7.2).
    batch = [Example([0, 1, 2, 3, 4], 3), Example([5, 6], 1), Example([7, 8, 9], 2)]
    inputs, targets = collate(batch, EOT, mask_prompt=True)
    assert inputs.tolist() == [[0, 1, 2, 3, 4], [5, 6, EOT, EOT, EOT], [7, 8, 9, EOT, EOT]]
    assert targets.tolist() == [[-100, -100, 3, 4, EOT], [6, EOT, -100, -100, -100],
                                [-100, 9, EOT, -100, -100]]
    # Without mask_prompt the same examples give the book's targets.
    assert collate(batch, EOT)[1].tolist()[0] == [1, 2, 3, 4, EOT]


def test_an_end_of_text_inside_the_text_stays_a_target():
    # The book masks by value; positions decide here, so a real end-of-text token is learned.
    _, targets = collate([[0, EOT, 2], [5]], EOT)
    assert targets.tolist() == [[EOT, 2, EOT], [EOT, -100, -100]]


def test_the_loss_is_the_mean_over_targets_that_are_not_ignored():
    torch.manual_seed(0)
    model = build_model(load_config({"model": {"preset": "nanogpt-baby", "vocab_size": 65}})).eval()
    inputs, targets = collate([[1, 2, 3, 4, 5], [6, 7]], 0)
    with torch.no_grad():
        logits = model(inputs)
        keep = targets != IGNORE_INDEX
        want = -torch.log_softmax(logits, -1)[keep].gather(-1, targets[keep][:, None]).mean()
        got = instruction_loss(model, (inputs, targets))
        assert got.item() == pytest.approx(want.item(), rel=1e-6)
        assert got.item() == pytest.approx(F.cross_entropy(logits.flatten(0, 1), targets.flatten())
                                           .item(), rel=1e-6)
        # Every target ignored: a zero loss, not NaN.
        assert instruction_loss(model, (inputs, torch.full_like(targets, -100))).item() == 0.0


# --- splits and encoding ----------------------------------------------------------------------


def test_split_of_the_books_data_is_935_110_55_in_file_order(records):
    train, val, test = split_records(records, (0.85, 0.10, 0.05))
    assert (len(records), len(train), len(val), len(test)) == (1100, 935, 110, 55)
    assert train + val + test == records


def test_the_books_split_order_gives_its_test_records(records):
    train, val, test = split_records(records, (0.85, 0.05, 0.10), order="train-test-val")
    assert (len(train), len(val), len(test)) == (935, 55, 110)
    assert test == records[935:1045] and val == records[1045:]


def test_the_test_split_is_the_rest_only_when_the_fractions_sum_to_1():
    items = list(range(99))
    assert [len(s) for s in split_records(items, (0.85, 0.10, 0.05))] == [84, 9, 6]
    assert [len(s) for s in split_records(items, (0.5, 0.1, 0.1))] == [49, 9, 9]
    with pytest.raises(ConfigError, match=r"split \[0.5, 0.5, 0.5\] must be 3 fractions"):
        split_records(items, (0.5, 0.5, 0.5))


def test_a_shuffled_split_is_seeded():
    items = list(range(100))
    a = split_records(items, (0.85, 0.1, 0.05), shuffle=True, seed=1)
    assert a == split_records(items, (0.85, 0.1, 0.05), shuffle=True, seed=1)
    assert a != split_records(items, (0.85, 0.1, 0.05), shuffle=True, seed=2)
    assert sorted(a[0] + a[1] + a[2]) == items and [len(s) for s in a] == [85, 10, 5]


def test_the_trainer_checks_its_split_when_the_config_loads():
    config = load_config({"train": {"trainer": {"name": "instruct"}}})
    assert config.train.trainer.params["split"] == [0.85, 0.1, 0.05]
    with pytest.raises(ConfigError, match=r"train.trainer.*split \[0.9, 0.2, 0.0\] must be"):
        load_config({"train": {"trainer": {"name": "instruct", "split": [0.9, 0.2, 0.0]}}})


@pytest.mark.parametrize("name", ["alpaca", "phi3"])
def test_prompt_and_response_encoded_apart_equal_the_whole_text(records, gpt2, name):
    template = get_registry().build("prompt", name)
    for record in records:
        example = encode_example(gpt2, template, record)
        assert example.ids == gpt2.encode(template.prompt(record) + template.response(record))
        assert example.ids[:example.prompt_length] == gpt2.encode(template.prompt(record))


def test_a_tokenizer_without_end_of_text_is_a_config_error(gpt2):
    assert end_of_text_id(gpt2) == EOT
    char = get_registry().build("tokenizer", {"name": "char", "chars": "abc"})
    with pytest.raises(ConfigError, match=r"'char' has no <\|endoftext\|> special token.*tiktoken"):
        end_of_text_id(char)
    with pytest.raises(ConfigError, match="needs a tokenizer"):
        end_of_text_id(None)


# --- the default template, special tokens and the end token -----------------------------------


class Separated(PromptTemplate):
    """A template that writes <|endoftext|> itself: between prompt and answer, and after it."""

    name = "separated"

    def prompt(self, record):
        return f"Q: {record['instruction']}<|endoftext|>A:"

    def response(self, record):
        return f" {record['output']}<|endoftext|>\n"


class WithTemplate:
    """Stands for a tokenizer that carries a model's chat template (the hf tokenizer's attributes)."""

    chat_template = "{{ messages[0]['content'] }}"
    bos_token = "<s>"
    eos_token = None


def test_the_default_template_is_the_tokenizers_chat_template_else_alpaca(gpt2):
    assert default_prompt(gpt2) == default_prompt(None) == "alpaca"
    assert default_prompt(WithTemplate()) == {"name": "chat_template", "bos_token": "<s>",
                                              "template": "{{ messages[0]['content'] }}"}
    chat = prompt_template(load_config({}), tokenizer=WithTemplate())
    assert chat.name == "chat_template" and chat.prompt({"instruction": "hi", "input": ""}) == "hi"
    explicit = load_config({"data": {"prompt": "phi3"}})  # an explicit data.prompt wins
    assert prompt_template(explicit, tokenizer=WithTemplate()).name == "phi3"


def test_special_looking_text_in_a_record_stays_text(gpt2):
    record = {"instruction": "Repeat <|endoftext|> twice.", "input": "x<|endoftext|>",
              "output": "<|endoftext|> <|endoftext|>"}
    # alpaca writes no special token: the whole text is plain, as before.
    alpaca = get_registry().build("prompt", "alpaca")
    example = encode_example(gpt2, alpaca, record, end_id=EOT)
    assert example.ids == gpt2.encode(alpaca.prompt(record) + alpaca.response(record))
    assert EOT not in example.ids
    # A template that writes <|endoftext|>: its own is the id, the record's stays text.
    separated = Separated(None)
    prompt = encode_prompt(gpt2, separated, record)
    assert prompt.count(EOT) == 1 and gpt2.decode(prompt) == separated.prompt(record)
    before, after = prompt[:prompt.index(EOT)], prompt[prompt.index(EOT) + 1:]
    assert before == gpt2.encode(f"Q: {record['instruction']}") and after == gpt2.encode("A:")


def test_the_end_token_is_the_templates_else_the_tokenizers(gpt2):
    separated = Separated(None)
    alpaca = get_registry().build("prompt", "alpaca")
    assert template_end_token(gpt2, separated) == "<|endoftext|>"
    assert template_end_token(gpt2, alpaca) is None
    assert end_token(gpt2, alpaca) == end_token(gpt2) == "<|endoftext|>"
    assert end_token_id(gpt2, alpaca) == EOT
    # The answer stops before the template's end token (collate appends it as the one target);
    # what the template writes after it (a newline) is not learned.
    record = {"instruction": "Say hi.", "input": "", "output": "Hi."}
    example = encode_example(gpt2, separated, record)
    assert example.ids[example.prompt_length:] == gpt2.encode(" Hi.")
    char = get_registry().build("tokenizer", {"name": "char", "chars": "abc"})
    assert end_token(char, alpaca) is None
    with pytest.raises(ConfigError, match=r"'char' has no <\|endoftext\|> special token"):
        end_token_id(char, alpaca)
    with pytest.raises(ConfigError, match="needs a tokenizer"):
        end_token_id(None, alpaca)


# --- batches ----------------------------------------------------------------------------------


def examples(n: int) -> list[Example]:
    return [Example(list(range(i % 7 + 1)), 1) for i in range(n)]


def test_batches_restart_mid_epoch_and_shard_across_ranks():
    one = InstructionBatches(examples(40), 4, EOT, seed=3)
    full = list(one.epoch(2))
    assert len(full) == len(one) == 10
    resumed = list(one.epoch(2, start=6))
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
               for a, b in zip(full[6:], resumed, strict=True))
    assert one.order(2) != one.order(3)  # a new order each epoch
    # Two ranks of batch 2 see, together, exactly the examples one process of batch 4 sees.
    order = one.order(2)
    for rank in (0, 1):
        shard = InstructionBatches(examples(40), 2, EOT, seed=3, rank=rank, world_size=2)
        assert len(shard) == 10
        first = next(shard.epoch(2))
        want = collate([examples(40)[i] for i in order[rank * 2:rank * 2 + 2]], EOT)
        assert torch.equal(first[0], want[0]) and torch.equal(first[1], want[1])


def test_batches_in_order_without_shuffle_and_too_few_examples():
    batches = InstructionBatches(examples(10), 4, EOT, shuffle=False, drop_last=False)
    assert len(batches) == 3 and batches.order(0) == list(range(10))
    assert [len(b[0]) for b in batches.all()] == [4, 4, 2]
    assert len(batches.spread(2)) == 2
    with pytest.raises(DataError, match="make no batch of 8"):
        InstructionBatches(examples(5), 8, EOT)


# --- responses --------------------------------------------------------------------------------


def test_responses_stop_at_end_of_text_and_batch_equal_prompts(gpt2, tmp_path):
    torch.manual_seed(0)
    model = build_model(load_config({"model": {"tokenizer": {"name": "tiktoken"}, "context_length": 32,
                                               "emb_dim": 16, "n_layers": 1, "n_heads": 2}}),
                        tokenizer=gpt2).eval()
    template = get_registry().build("prompt", "alpaca")
    recs = [{"instruction": w, "input": "", "output": ""} for w in ("Say hi.", "Say yo.", "Count.")]
    batched = generate_responses(model, gpt2, template, recs, max_new_tokens=5, max_context=32)
    alone = [generate_responses(model, gpt2, template, [r], max_new_tokens=5, max_context=32)[0]
             for r in recs]
    assert batched == alone and len(batched) == 3
    assert all(isinstance(r, str) and r == r.strip() for r in batched)


def test_the_books_responses_file_has_the_shape_we_write(records):
    data = need_data("instruction-data-with-response.json") / "instruction-data-with-response.json"
    book = json.loads(data.read_text(encoding="utf-8"))
    # The book's file: its 110 test records (its test split is 10%, ours 5%) with the answers.
    assert len(book) == 110 and set(book[0]) == {"instruction", "input", "output", "model_response"}
    assert [{k: v for k, v in e.items() if k != "model_response"} for e in book] == records[935:1045]
