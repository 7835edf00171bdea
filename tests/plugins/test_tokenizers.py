"""The regex and tiktoken tokenizers against the book's numbers and tiktoken's own encodings."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmbricks.core.errors import DataError
from llmbricks.core.registry import get_registry
from tests.conftest import need_data

DATA = Path(os.environ.get("LLMBRICKS_DATA_DIR", Path(__file__).resolve().parents[3] / "shared" / "data"))
BOOK_SENTENCE = "Hello, do you like tea? <|endoftext|> In the sunlit terraces of someunknownPlace."
BOOK_IDS = [15496, 11, 466, 345, 588, 8887, 30, 220, 50256, 554, 262, 4252, 18250, 8812, 2114,
            286, 617, 34680, 27271, 13]


def build(spec):
    return get_registry().build("tokenizer", spec)


@pytest.fixture(scope="module")
def verdict() -> str:
    need_data("the-verdict.txt")
    return (DATA / "the-verdict.txt").read_text(encoding="utf-8")


# --- regex ------------------------------------------------------------------------------------


def test_regex_on_the_verdict_gives_the_books_numbers(verdict):
    tok = build("regex")
    tok.train([verdict])
    assert len(tok.encode(verdict)) == 4690
    assert tok.vocab_size == 1132  # 1,130 words + <|endoftext|> + <|unk|>
    assert tok.special_tokens == {"<|endoftext|>": 1130, "<|unk|>": 1131}


def test_regex_unknown_words_and_decoding(verdict):
    tok = build("regex")
    tok.train([verdict])
    text = "Hello, do you like tea? <|endoftext|> In the sunlit terraces of the palace."
    ids = tok.encode(text)
    assert ids == [1131, 5, 355, 1126, 628, 975, 10, 1130, 55, 988, 956, 984, 722, 988, 1131, 7]
    assert tok.decode(ids) == ("<|unk|>, do you like tea? <|endoftext|> In the sunlit terraces of "
                               "the <|unk|>.")
    sample = '"It\'s the last he painted, you know," Mrs. Gisburn said with pardonable pride.'
    assert tok.decode(tok.encode(sample)) == ('" It\' s the last he painted, you know," Mrs. Gisburn '
                                              'said with pardonable pride.')


def test_regex_needs_training_and_saves(tmp_path, verdict):
    tok = build("regex")
    with pytest.raises(DataError, match="no vocabulary yet"):
        tok.encode("hi")
    tok.train([verdict])
    tok.save(tmp_path)
    again = type(tok).load(tmp_path)
    assert again.encode(verdict) == tok.encode(verdict)


# --- tiktoken ---------------------------------------------------------------------------------


@pytest.mark.data_files("gpt2.tiktoken")
def test_tiktoken_gpt2_encodes_the_books_sentence():
    tok = build("tiktoken")
    assert tok.vocab_size == 50257
    assert tok.encode(BOOK_SENTENCE, allowed_special={"<|endoftext|>"}) == BOOK_IDS
    assert tok.decode(BOOK_IDS) == BOOK_SENTENCE
    # A special that is not allowed is plain text, never an error.
    assert 50256 not in tok.encode(BOOK_SENTENCE)


@pytest.mark.data_files("gpt2.tiktoken")
def test_tiktoken_the_verdict_has_5145_tokens(verdict):
    assert len(build("tiktoken").encode(verdict)) == 5145


@pytest.mark.data_files("gpt2.tiktoken", "encoder.json", "vocab.bpe")
def test_tiktoken_resolves_each_offline_path(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMBRICKS_OFFLINE", "1")
    monkeypatch.setenv("LLMBRICKS_CACHE_DIR", str(tmp_path / "cache"))
    # 1. an explicit .tiktoken file, and an explicit folder with encoder.json + vocab.bpe
    by_file = build({"name": "tiktoken", "file": str(DATA / "gpt2.tiktoken")})
    assert by_file.encode(BOOK_SENTENCE, allowed_special="all") == BOOK_IDS
    gpt2_dir = tmp_path / "gpt2"
    gpt2_dir.mkdir()
    for name in ("encoder.json", "vocab.bpe"):
        (gpt2_dir / name).write_bytes((DATA / name).read_bytes())
    by_dir = build({"name": "tiktoken", "file": str(gpt2_dir)})
    assert by_dir.encode(BOOK_SENTENCE, allowed_special="all") == BOOK_IDS
    # 2. $LLMBRICKS_DATA_DIR with only encoder.json + vocab.bpe
    monkeypatch.setenv("LLMBRICKS_DATA_DIR", str(gpt2_dir))
    assert build("tiktoken").encode(BOOK_SENTENCE, allowed_special="all") == BOOK_IDS
    # 3. the llmbricks cache
    monkeypatch.delenv("LLMBRICKS_DATA_DIR")
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "gpt2.tiktoken").write_bytes((DATA / "gpt2.tiktoken").read_bytes())
    assert build("tiktoken").encode(BOOK_SENTENCE, allowed_special="all") == BOOK_IDS


def test_tiktoken_missing_files_say_where_to_put_them(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMBRICKS_OFFLINE", "1")
    monkeypatch.setenv("LLMBRICKS_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("LLMBRICKS_DATA_DIR", str(tmp_path))
    with pytest.raises(DataError, match=r"tiktoken encoding 'cl100k_base' not found: place "
                                        r"cl100k_base.tiktoken in \$LLMBRICKS_DATA_DIR"):
        build({"name": "tiktoken", "encoding": "cl100k_base"})
    with pytest.raises(DataError, match="place gpt2.tiktoken or encoder.json \\+ vocab.bpe"):
        build("tiktoken")


def test_tiktoken_wrong_file_is_a_checksum_error(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMBRICKS_DATA_DIR", str(tmp_path))
    (tmp_path / "gpt2.tiktoken").write_text("not ranks")
    with pytest.raises(DataError, match="sha256 mismatch for gpt2.tiktoken: expected 306cd27f"):
        build("tiktoken")


def test_tiktoken_known_vocab_sizes_resolve_vocab_auto():
    from llmbricks.core.config import load_config

    assert load_config({"model": {"tokenizer": "tiktoken"}}).model.vocab_size == 50257
    cl = load_config({"model": {"tokenizer": {"name": "tiktoken", "encoding": "cl100k_base"}}})
    assert cl.model.vocab_size == 100277


@pytest.mark.data_files("gpt2.tiktoken")
def test_tiktoken_save_load(tmp_path):
    tok = build("tiktoken")
    tok.save(tmp_path)
    from llmbricks.core.build import load_tokenizer

    again = load_tokenizer(tmp_path)
    assert again.name == "tiktoken" and again.encode("hello world") == tok.encode("hello world")
    assert again.fingerprint() == tok.fingerprint()


@pytest.mark.data_files("gpt2.tiktoken")
@settings(max_examples=150, deadline=None)
@given(st.text(st.characters(codec="utf-8"), max_size=200)
       | st.sampled_from(["\r\n\r\n", "   many   spaces   ", "e\u0301\u0302", "😀👍🏽 家族", "\t\n \n"]))
def test_tiktoken_round_trip(text):
    tok = gpt2_tokenizer()
    assert tok.decode(tok.encode(text)) == text


@functools.cache
def gpt2_tokenizer():
    return build("tiktoken")


@pytest.mark.data_files("gpt2.tiktoken")
def test_decode_rejects_ids_outside_the_vocabulary(verdict):
    with pytest.raises(DataError, match="token id 99999 is outside the 'gpt2' vocabulary"):
        build("tiktoken").decode([99999])
    regex = build("regex")
    regex.train([verdict])
    with pytest.raises(DataError, match="token id -1 is outside the 'regex' vocabulary"):
        regex.decode([-1])


@pytest.mark.data_files("gpt2.tiktoken")
def test_tiktoken_fingerprint_follows_the_ranks_not_the_path(tmp_path):
    path = tmp_path / "ranks.tiktoken"
    path.write_bytes((DATA / "gpt2.tiktoken").read_bytes())
    first = build({"name": "tiktoken", "file": str(path)}).fingerprint()
    lines = path.read_bytes().splitlines()
    (a, rank_a), (b, rank_b) = lines[-2].split(), lines[-1].split()
    lines[-2:] = [a + b" " + rank_b, b + b" " + rank_a]  # swap the ranks of the last two merges
    path.write_bytes(b"\n".join(lines) + b"\n")
    assert build({"name": "tiktoken", "file": str(path)}).fingerprint() != first
