"""The `hf` tokenizer against transformers' AutoTokenizer on a tokenizer.json built here (and GPT-2's)."""

from __future__ import annotations

import functools
import inspect
import json
import random
import shutil
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from llmbricks.core.build import load_tokenizer
from llmbricks.core.config import load_config
from llmbricks.core.errors import ConfigError, DataError, InputError
from llmbricks.core.registry import get_registry
from llmbricks.testing import check_component
from tests.plugins.test_tokenizers import BOOK_IDS, BOOK_SENTENCE, DATA

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
            "<|eot_id|>"]
#: Llama 3's chat format: a header per turn, each turn closed by <|eot_id|>.
LLAMA3_TEMPLATE = (
    "{% for message in messages %}"
    "{% set turn = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    " + message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.first %}{% set turn = bos_token + turn %}{% endif %}"
    "{{ turn }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
TEXTS = [
    "hello world", "The quick brown fox jumps over the lazy dog.", "",
    "  leading spaces,\ttabs\tand\n\nnew lines\r\n  ", "café naïve über straße 東京 données",
    "emoji 😀👍🏽 and combining e\u0301", "<|begin_of_text|>hi<|eot_id|> there",
    "a<|eot_id|><|eot_id|>b <|start_header_id|>user<|end_header_id|>\n\n<|unknown|>",
    "<|begin_of_text", "12345 3.14159 x=y+z; f(a, b)",
]
WORDS = ("the quick brown fox jumps over a lazy dog and tokenizer merges bytes into tokens while "
         "café naïve straße 東京 über données emoji 😀 numbers 12 345 6789 user assistant system "
         "hello world chat template special").split()


def corpus(lines: int = 400) -> list[str]:
    rng = random.Random(0)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 14)))
            + rng.choice([".", "!", "?", ",", "\n", "\t", "  "]) for _ in range(lines)]


def make_hf_folder(folder: Path, template: str = LLAMA3_TEMPLATE) -> Path:
    """A small Llama-3-like model folder: a byte-level BPE tokenizer.json and a tokenizer_config.json."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=420, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus(), trainer)
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in SPECIALS])
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|begin_of_text|>",
              "eos_token": "<|eot_id|>", "chat_template": template, "model_max_length": 2048,
              "clean_up_tokenization_spaces": False}
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=1), encoding="utf-8")
    return folder


def make_tiny_llama_folder(folder: Path) -> Path:
    """``make_hf_folder`` plus a random tiny LlamaForCausalLM (vocabulary 432) saved beside it."""
    make_hf_folder(folder)
    torch.manual_seed(0)
    config = transformers.LlamaConfig(vocab_size=432, hidden_size=64, intermediate_size=88,
                                      num_hidden_layers=2, num_attention_heads=4,
                                      num_key_value_heads=2, max_position_embeddings=128)
    transformers.LlamaForCausalLM(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return make_hf_folder(tmp_path_factory.mktemp("llama3ish"))


@functools.cache
def auto(folder: str, split_special_tokens: bool = False):
    return transformers.AutoTokenizer.from_pretrained(folder, split_special_tokens=split_special_tokens)


def reference_ids(folder: Path, text: str, allow_special: bool) -> list[int]:
    """AutoTokenizer's ids, without BOS; specials split as text unless allowed."""
    return auto(str(folder), not allow_special)(text, add_special_tokens=False)["input_ids"]


def build(path: Path | str | None = None):
    return get_registry().build("tokenizer", {"name": "hf", "path": None if path is None else str(path)})


def one_line_error(excinfo: pytest.ExceptionInfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message and "Traceback" not in message
    return message


# --- encoding like transformers ---------------------------------------------------------------


def test_ids_equal_autotokenizers_with_and_without_specials(model_dir):
    tok = build(model_dir)
    for text in TEXTS:
        plain = tok.encode(text)
        assert plain == reference_ids(model_dir, text, allow_special=False), text
        assert tok.encode(text, allowed_special="all") == reference_ids(model_dir, text, True), text
        assert not set(plain) & set(tok.special_tokens.values())  # specials were text
        assert tok.decode(plain) == text
        assert tok.decode(plain) == auto(str(model_dir)).decode(plain, clean_up_tokenization_spaces=False)
    assert tok.encode(TEXTS[6], allowed_special="all")[0] == tok.special_tokens["<|begin_of_text|>"]


def test_a_partial_set_of_specials_lets_only_those_through(model_dir):
    tok = build(model_dir)
    eot, bot = tok.special_tokens["<|eot_id|>"], tok.special_tokens["<|begin_of_text|>"]
    text = "<|begin_of_text|>hi<|eot_id|> there"
    ids = tok.encode(text, allowed_special={"<|eot_id|>"})
    assert ids == tok.encode("<|begin_of_text|>hi") + [eot] + tok.encode(" there")
    assert bot not in ids
    assert tok.encode(text, allowed_special="<|eot_id|>") == ids  # one name, as a string
    assert tok.encode(text, allowed_special=["<|eot_id|>", "<|nope|>"]) == ids  # unknown names ignored
    assert tok.encode(text, allowed_special=set(SPECIALS)) == tok.encode(text, allowed_special="all")
    assert tok.encode(text, allowed_special={"<|nope|>"}) == tok.encode(text)


def test_specials_vocab_size_and_config_tokens(model_dir):
    tok = build(model_dir)
    hf = auto(str(model_dir))
    assert list(tok.special_tokens) == SPECIALS
    assert tok.special_tokens == {s: hf.convert_tokens_to_ids(s) for s in SPECIALS}
    assert tok.vocab_size == len(hf) == tok._plain.get_vocab_size(with_added_tokens=True)
    assert (tok.bos_token, tok.eos_token, tok.chat_template) == ("<|begin_of_text|>", "<|eot_id|>",
                                                                LLAMA3_TEMPLATE)
    assert not tok.trainable and tok.is_trained
    with pytest.raises(TypeError, match="not trainable"):
        tok.train(["text"])


def test_encode_batch_equals_encode(model_dir):
    tok = build(model_dir)
    assert tok.encode_batch(TEXTS) == [tok.encode(text) for text in TEXTS]


def test_known_vocab_size_resolves_vocab_auto(model_dir):
    config = load_config({"model": {"tokenizer": {"name": "hf", "path": str(model_dir)}}})
    assert config.model.vocab_size == build(model_dir).vocab_size
    # Without a path the vocabulary is unknown until built (a model directory's config names
    # `hf` with no path: its tokenizer/ folder holds the files); building it says what is missing.
    pathless = load_config({"model": {"tokenizer": "hf"}})
    assert pathless.model.vocab_size == "auto"
    from llmbricks.core.build import build_tokenizer
    with pytest.raises(ConfigError, match="tokenizer 'hf' needs 'path'"):
        build_tokenizer(pathless)


@settings(max_examples=60, deadline=None)
@given(st.text(st.characters(codec="utf-8"), max_size=80)
       | st.lists(st.sampled_from([*SPECIALS, "hello", " ", "\n\n", "東京", "<|", "|>"]), max_size=8)
       .map("".join))
def test_random_text_matches_transformers_and_round_trips(text):
    folder = _shared_folder()
    tok = _shared_tokenizer()
    assert tok.encode(text) == reference_ids(folder, text, allow_special=False)
    assert tok.encode(text, allowed_special="all") == reference_ids(folder, text, allow_special=True)
    assert tok.decode(tok.encode(text)) == text


@functools.cache
def _shared_folder() -> Path:
    import tempfile

    return make_hf_folder(Path(tempfile.mkdtemp(prefix="llmbricks-hf-")))


@functools.cache
def _shared_tokenizer():
    return build(_shared_folder())


# --- save / load ------------------------------------------------------------------------------


def test_save_load_needs_nothing_from_the_source(model_dir, tmp_path):
    source = shutil.copytree(model_dir, tmp_path / "source")
    tok = build(source / "tokenizer.json")  # the file itself works as the path
    tok.save(tmp_path / "saved")
    shutil.rmtree(source)
    saved = sorted(p.name for p in (tmp_path / "saved").iterdir())
    assert saved == ["hf_tokenizer.json", "hf_tokenizer_config.json", "tokenizer.json"]
    state = json.loads((tmp_path / "saved" / "tokenizer.json").read_text(encoding="utf-8"))
    assert state["name"] == "hf" and state["params"] == {"path": None}
    assert (tmp_path / "saved" / "hf_tokenizer.json").read_bytes() == \
        (model_dir / "tokenizer.json").read_bytes()
    again = load_tokenizer(tmp_path / "saved")
    assert again.name == "hf" and again.fingerprint() == tok.fingerprint()
    assert again.fingerprint() == build(model_dir).fingerprint()  # the path is not part of it
    for text in TEXTS:
        assert again.encode(text) == tok.encode(text)
        assert again.encode(text, allowed_special="all") == tok.encode(text, allowed_special="all")
    assert (again.special_tokens, again.chat_template, again.eos_token) == \
        (tok.special_tokens, tok.chat_template, tok.eos_token)


def test_a_folder_without_a_config_and_one_with_chat_template_jinja(model_dir, tmp_path):
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(model_dir / "tokenizer.json", bare)
    tok = build(bare)
    assert (tok.bos_token, tok.eos_token, tok.chat_template) == (None, None, None)
    tok.save(tmp_path / "saved-bare")
    assert not (tmp_path / "saved-bare" / "hf_tokenizer_config.json").exists()
    assert load_tokenizer(tmp_path / "saved-bare").encode("hi") == tok.encode("hi")
    # transformers 5 saves the template apart, as chat_template.jinja
    auto(str(model_dir)).save_pretrained(tmp_path / "resaved")
    resaved = build(tmp_path / "resaved")
    assert resaved.chat_template == LLAMA3_TEMPLATE
    resaved.save(tmp_path / "saved-jinja")
    assert load_tokenizer(tmp_path / "saved-jinja").chat_template == LLAMA3_TEMPLATE


def test_the_conformance_kit_passes(model_dir):
    passed = check_component("tokenizer", "hf", params={"path": str(model_dir)})
    assert {"id range", "round trip", "save/load"} <= set(passed)


# --- bad input: one line, never a library traceback -------------------------------------------


def test_bad_paths_are_one_line_errors(model_dir, tmp_path):
    with pytest.raises(InputError, match="does not exist") as excinfo:
        build(tmp_path / "nope")
    one_line_error(excinfo)
    with pytest.raises(InputError, match="holds no tokenizer.json") as excinfo:
        build(tmp_path)
    one_line_error(excinfo)
    bad = tmp_path / "bad.json"
    for content, reason in [("not json at all", "expected"), ('{"version": "1.0"}', "missing"),
                            ("[1, 2", "")]:
        bad.write_text(content)
        with pytest.raises(InputError, match="is not a valid Hugging Face tokenizer.json") as excinfo:
            build(bad)
        assert reason in one_line_error(excinfo)
    bad.write_bytes(b"\xff\xfe{}")
    with pytest.raises(InputError, match="is not UTF-8") as excinfo:
        build(bad)
    one_line_error(excinfo)
    with pytest.raises(ConfigError, match="needs 'path'") as excinfo:
        build()
    one_line_error(excinfo)


def test_a_saved_folder_is_not_a_source_and_broken_saves_are_named(model_dir, tmp_path):
    build(model_dir).save(tmp_path / "saved")
    with pytest.raises(InputError, match="saved by llmbricks, 'hf': load its folder") as excinfo:
        build(tmp_path / "saved")
    one_line_error(excinfo)
    (tmp_path / "saved" / "hf_tokenizer.json").unlink()
    with pytest.raises(DataError, match="lacks hf_tokenizer.json") as excinfo:
        load_tokenizer(tmp_path / "saved")
    one_line_error(excinfo)
    bad_config = shutil.copytree(model_dir, tmp_path / "bad-config")
    (bad_config / "tokenizer_config.json").write_text("{oops")
    with pytest.raises(InputError, match="tokenizer_config.json is not valid JSON") as excinfo:
        build(bad_config)
    one_line_error(excinfo)


def test_decode_refuses_ids_outside_the_vocabulary(model_dir):
    tok = build(model_dir)
    with pytest.raises(DataError, match=f"token id {tok.vocab_size} is outside the 'hf' vocabulary"):
        tok.decode([1, tok.vocab_size])


# --- GPT-2's own files, converted by transformers ---------------------------------------------


@pytest.mark.data_files("encoder.json", "vocab.bpe")
def test_gpt2_converted_to_tokenizer_json(tmp_path):
    from transformers import GPT2TokenizerFast

    files = {"vocab": str(DATA / "encoder.json"), "merges": str(DATA / "vocab.bpe")}
    if "vocab" not in inspect.signature(GPT2TokenizerFast.__init__).parameters:  # transformers 4
        files = {"vocab_file": files["vocab"], "merges_file": files["merges"]}
    GPT2TokenizerFast(**files).save_pretrained(tmp_path / "gpt2")
    tok = build(tmp_path / "gpt2")
    assert tok.vocab_size == 50257 and tok.special_tokens == {"<|endoftext|>": 50256}
    assert tok.encode(BOOK_SENTENCE, allowed_special="all") == BOOK_IDS
    assert 50256 not in tok.encode(BOOK_SENTENCE)
    for text in [*TEXTS, BOOK_SENTENCE]:
        assert tok.encode(text) == reference_ids(tmp_path / "gpt2", text, allow_special=False)
        assert tok.encode(text, "all") == reference_ids(tmp_path / "gpt2", text, allow_special=True)
        assert tok.decode(tok.encode(text)) == text
