"""The ``bpe`` tokenizer: GPT-2 equivalence, training against a naive oracle, files, errors."""

from __future__ import annotations

import json
import logging
import random
import types
from collections import Counter
from itertools import pairwise
from pathlib import Path

import pytest
import tiktoken
import tiktoken.load
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from llmbricks.core.errors import ConfigError, DataError
from llmbricks.plugins.tokenizers.bpe import (
    GPT2_PATTERN,
    BPETokenizer,
    learn_merges,
    pretokenize,
    ranks_from_merges,
)
from llmbricks.plugins.tokenizers.gpt2_files import (
    bytes_to_unicode,
    dump_tiktoken_ranks,
    load_gpt2_ranks,
    load_tiktoken_ranks,
    unicode_to_bytes,
)
from tests.conftest import need_data

EOT = "<|endoftext|>"
BOOK_SENTENCE = "Hello, do you like tea? <|endoftext|> In the sunlit terraces of someunknownPlace."
BOOK_IDS = [15496, 11, 466, 345, 588, 8887, 30, 220, 50256, 554, 262, 4252, 18250, 8812, 2114, 286,
            617, 34680, 27271, 13]


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def data_dir() -> Path:
    return need_data("the-verdict.txt", "tinyshakespeare.txt", "encoder.json", "vocab.bpe",
                     "gpt2.tiktoken")


@pytest.fixture(scope="module")
def verdict(data_dir: Path) -> str:
    return (data_dir / "the-verdict.txt").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def shakespeare(data_dir: Path) -> str:
    return (data_dir / "tinyshakespeare.txt").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def gpt2_bpe(data_dir: Path) -> BPETokenizer:
    return BPETokenizer(BPETokenizer.Params(gpt2_files=str(data_dir)))


@pytest.fixture(scope="module")
def tiktoken_gpt2(data_dir: Path) -> tiktoken.Encoding:
    """tiktoken's ``gpt2`` encoding, built offline from its own ranks file and loader."""
    ranks = tiktoken.load.load_tiktoken_bpe(str(data_dir / "gpt2.tiktoken"))
    return tiktoken.Encoding(name="gpt2-reference", pat_str=GPT2_PATTERN, mergeable_ranks=ranks,
                             special_tokens={EOT: 50256}, explicit_n_vocab=50257)


@pytest.fixture(scope="module")
def verdict_bpe(verdict: str) -> BPETokenizer:
    tok = BPETokenizer(BPETokenizer.Params(vocab_size=600))
    tok.train([verdict])
    return tok


# --- GPT-2's files ----------------------------------------------------------------------------


def test_bytes_to_unicode_is_gpt2s_table():
    table = bytes_to_unicode()
    assert len(table) == 256 and len(set(table.values())) == 256
    assert all(ch.isprintable() and not ch.isspace() for ch in table.values())
    assert table[ord(" ")] == "Ġ" and table[ord("\n")] == "Ċ" and table[ord("A")] == "A"
    assert table[0] == "Ā" and table[ord("¡")] == "¡"
    assert unicode_to_bytes() == {ch: b for b, ch in table.items()}


def test_gpt2_ranks_equal_tiktokens(data_dir: Path):
    ranks = load_gpt2_ranks(data_dir / "encoder.json", data_dir / "vocab.bpe")
    assert len(ranks) == 50256
    assert ranks == tiktoken.load.load_tiktoken_bpe(str(data_dir / "gpt2.tiktoken"))
    assert ranks == load_tiktoken_ranks(data_dir / "gpt2.tiktoken")


def test_tiktoken_ranks_file_round_trip(tmp_path: Path, data_dir: Path):
    ranks = load_tiktoken_ranks(data_dir / "gpt2.tiktoken")
    out = tmp_path / "sub" / "ranks.tiktoken"
    dump_tiktoken_ranks(ranks, out)
    assert out.read_bytes() == (data_dir / "gpt2.tiktoken").read_bytes()
    assert [p.name for p in out.parent.iterdir()] == ["ranks.tiktoken"]  # no temp file left
    odd = {b"\x00\xff": 0, b" \n": 1, "é".encode(): 2}
    dump_tiktoken_ranks(odd, out)
    assert load_tiktoken_ranks(out) == odd == tiktoken.load.load_tiktoken_bpe(str(out))


def test_mismatched_gpt2_files_are_an_error(tmp_path: Path):
    order = list(bytes_to_unicode().values())
    encoder = {ch: i for i, ch in enumerate(order)}
    encoder.update({"Ġt": 256, "he": 257, EOT: 258})
    (tmp_path / "encoder.json").write_text(json.dumps(encoder), encoding="utf-8")
    (tmp_path / "vocab.bpe").write_text("#version: 0.2\nĠ t\nh e\n", encoding="utf-8")
    ranks = load_gpt2_ranks(tmp_path / "encoder.json", tmp_path / "vocab.bpe")
    assert ranks[b" t"] == 256 and ranks[b"he"] == 257 and len(ranks) == 258
    (tmp_path / "vocab.bpe").write_text("#version: 0.2\nh e\nĠ t\n", encoding="utf-8")
    with pytest.raises(DataError, match="disagree"):
        load_gpt2_ranks(tmp_path / "encoder.json", tmp_path / "vocab.bpe")
    (tmp_path / "vocab.bpe").write_text("#version: 0.2\nĠ t x\n", encoding="utf-8")
    with pytest.raises(DataError, match="vocab.bpe:2"):
        load_gpt2_ranks(tmp_path / "encoder.json", tmp_path / "vocab.bpe")
    (tmp_path / "vocab.bpe").write_text("#version: 0.2\nĠ t\nh e\n", encoding="utf-8")
    with pytest.raises(DataError, match="cannot read GPT-2 vocabulary"):
        load_gpt2_ranks(tmp_path / "missing.json", tmp_path / "vocab.bpe")


def test_gpt2_bpe_matches_tiktoken_on_the_verdict(gpt2_bpe, tiktoken_gpt2, verdict: str):
    ids = gpt2_bpe.encode(verdict)
    assert len(ids) == 5145
    assert ids == tiktoken_gpt2.encode_ordinary(verdict)
    assert gpt2_bpe.decode(ids) == verdict


def test_gpt2_bpe_matches_tiktoken_on_tinyshakespeare(gpt2_bpe, tiktoken_gpt2, shakespeare: str):
    ids = gpt2_bpe.encode(shakespeare)
    assert ids == tiktoken_gpt2.encode_ordinary(shakespeare)
    assert gpt2_bpe.decode(ids) == shakespeare
    lines = shakespeare.splitlines(keepends=True)[:500]
    assert gpt2_bpe.encode_batch(lines) == [tiktoken_gpt2.encode_ordinary(s) for s in lines]


def test_gpt2_bpe_book_sentence(gpt2_bpe, tiktoken_gpt2):
    assert gpt2_bpe.encode(BOOK_SENTENCE, allowed_special={EOT}) == BOOK_IDS
    assert gpt2_bpe.encode(BOOK_SENTENCE, allowed_special="all") == BOOK_IDS
    assert gpt2_bpe.encode(BOOK_SENTENCE, allowed_special=EOT) == BOOK_IDS
    # Not allowed: the special token's text is ordinary text (tiktoken with disallowed_special=()).
    plain = gpt2_bpe.encode(BOOK_SENTENCE)
    assert 50256 not in plain
    assert plain == tiktoken_gpt2.encode(BOOK_SENTENCE, disallowed_special=())
    assert gpt2_bpe.decode(BOOK_IDS) == BOOK_SENTENCE == gpt2_bpe.decode(plain)


def test_gpt2_bpe_vocabulary(gpt2_bpe, data_dir: Path):
    assert gpt2_bpe.is_trained
    assert gpt2_bpe.vocab_size == 50257
    assert gpt2_bpe.special_tokens == {EOT: 50256}
    assert BPETokenizer.known_vocab_size(BPETokenizer.Params(gpt2_files=str(data_dir))) == 50257
    assert BPETokenizer.known_vocab_size(BPETokenizer.Params()) == 4096
    assert gpt2_bpe.token_bytes(262) == b" the"
    extra = BPETokenizer(BPETokenizer.Params(gpt2_files=str(data_dir),
                                             special_tokens=[EOT, "<|pad|>"]))
    assert extra.special_tokens == {EOT: 50256, "<|pad|>": 50257} and extra.vocab_size == 50258


# --- round trips (hypothesis) -----------------------------------------------------------------

FRAGMENTS = ["\r\n", "\n", "   ", "\t", " ", "  \n ", "😀", "👩‍👩‍👧", "🇫🇷", "漢字", "日本語のテキスト",
             "e\u0301", "a\u0308\u0323", "Z\u0351\u0361", "'s", "'ll", "123", "ÿ", "\x00", "\u200b",
             EOT, "<|", "Ωμέγα", "مرحبا", "\ufeff"]
TEXTS = st.one_of(
    st.text(),
    st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=8)), max_size=30).map("".join),
)


@given(text=TEXTS)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_trained_bpe_round_trips(verdict_bpe, text: str):
    ids = verdict_bpe.encode(text)
    assert all(0 <= i < verdict_bpe.vocab_size for i in ids)
    assert verdict_bpe.decode(ids) == text
    assert verdict_bpe.decode(verdict_bpe.encode(text, allowed_special="all")) == text


@given(text=TEXTS)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_gpt2_bpe_round_trips(gpt2_bpe, tiktoken_gpt2, text: str):
    ids = gpt2_bpe.encode(text)
    assert ids == tiktoken_gpt2.encode_ordinary(text)
    assert gpt2_bpe.decode(ids) == text
    assert gpt2_bpe.decode(gpt2_bpe.encode(text, allowed_special="all")) == text


# --- training ---------------------------------------------------------------------------------


def naive_merges(word_counts: dict[bytes, int], vocab_size: int) -> list[tuple[bytes, bytes]]:
    """The textbook trainer: recount every pair of every word before each merge.

    Tokens are their bytes, so a merge that re-creates an existing token adds nothing new.
    """
    words = [([bytes([b]) for b in word], n) for word, n in word_counts.items()]
    vocab = {bytes([b]) for b in range(256)}
    merges: list[tuple[bytes, bytes]] = []
    while len(vocab) < vocab_size:
        pairs: Counter[tuple[bytes, bytes]] = Counter()
        for symbols, n in words:
            for pair in pairwise(symbols):
                pairs[pair] += n
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p[0], p[1]))
        merges.append(best)
        vocab.add(best[0] + best[1])
        for symbols, _ in words:
            i = 0
            while i < len(symbols) - 1:
                if (symbols[i], symbols[i + 1]) == best:
                    symbols[i:i + 2] = [best[0] + best[1]]
                i += 1
    return merges


def _word_counts(text: str) -> dict[bytes, int]:
    return {piece.encode(): n for piece, n in pretokenize([text], special_tokens=[EOT]).items()}


def test_incremental_trainer_equals_naive_on_the_verdict(verdict: str):
    words = _word_counts(verdict)
    fast = learn_merges(words, 700)
    assert fast == naive_merges(words, 700)
    assert len(ranks_from_merges(fast)) == 700


@pytest.mark.parametrize("seed", range(40))
def test_incremental_trainer_equals_naive_on_random_corpora(seed: int, caplog):
    # Few letters in runs: many ties, overlapping pairs ("aaa") and words that become one token.
    rng = random.Random(seed)
    words: dict[bytes, int] = {}
    for _ in range(rng.randint(1, 12)):
        word = b"".join(bytes([rng.choice(b"abc")]) * rng.randint(1, 4) for _ in range(rng.randint(1, 5)))
        words[word] = words.get(word, 0) + rng.randint(1, 6)
    with caplog.at_level(logging.ERROR):
        assert learn_merges(words, 330) == naive_merges(words, 330)


def test_trained_vocabulary_has_exactly_the_target_size(verdict_bpe):
    assert verdict_bpe.vocab_size == 600
    ranks = verdict_bpe.ranks
    assert len(ranks) == 599 and sorted(ranks.values()) == list(range(599))
    assert all(ranks[bytes([b])] == b for b in range(256))  # single bytes in byte order
    assert verdict_bpe.special_tokens == {EOT: 599}


def test_training_is_deterministic(verdict: str):
    def train() -> dict[bytes, int]:
        tok = BPETokenizer(BPETokenizer.Params(vocab_size=500, special_tokens=[]))
        tok.train(iter(verdict.splitlines(keepends=True)))  # any iterable, streamed once
        return tok.ranks
    first, second = train(), train()
    assert first == second and len(first) == 500
    assert list(first) == list(second)  # same order too: ranks follow the merge order


def test_tinyshakespeare_512_compresses_sensibly(shakespeare: str, record_property):
    tok = BPETokenizer(BPETokenizer.Params(vocab_size=512))
    tok.train([shakespeare])
    assert tok.vocab_size == 512
    ids = tok.encode(shakespeare)
    ratio = len(shakespeare.encode()) / len(ids)
    record_property("bytes_per_token_512", round(ratio, 3))
    print(f"tinyshakespeare, vocab 512: {ratio:.2f} bytes/token")
    assert 1.8 < ratio < 2.5
    assert tok.decode(ids) == shakespeare
    assert tok.encode(" the") == [tok.ranks[b" the"]]  # the commonest word is one token


def test_long_texts_are_pretokenized_in_pieces_with_the_same_counts(shakespeare: str):
    text = shakespeare[:200_000] + "\n\n  x\r\n\r\nab 12\n.\n \nz\n"
    whole = pretokenize([text])
    for size in (0, 1, 333, 50_000):
        assert pretokenize([text], chunk_chars=size) == whole


def test_special_tokens_are_never_merged():
    docs = ["the cat sat on the mat", "the dog ate the hat", "<|a|> that cat"] * 20
    joined = EOT.join(docs)
    params = BPETokenizer.Params(vocab_size=272, special_tokens=[EOT, "<|a|>"])
    with_specials = BPETokenizer(params)
    with_specials.train([joined, joined])
    # Cutting a special out is the same as a document boundary.
    separate = BPETokenizer(params)
    separate.train([d.replace("<|a|>", "") for d in docs] * 2)
    assert with_specials.ranks == separate.ranks
    assert not any(b"|" in token or b"<" in token for token in with_specials.ranks if len(token) > 1)

    tok = with_specials
    assert tok.special_tokens == {EOT: 270, "<|a|>": 271} and tok.vocab_size == 272
    ids = tok.encode("the cat<|endoftext|><|a|>", allowed_special="all")
    assert ids[-2:] == [270, 271] and tok.decode(ids) == "the cat<|endoftext|><|a|>"
    only_eot = tok.encode("x<|endoftext|><|a|>", allowed_special={EOT})
    assert 270 in only_eot and 271 not in only_eot
    plain = tok.encode("x<|endoftext|>")
    assert 270 not in plain and tok.decode(plain) == "x<|endoftext|>"


def test_a_small_corpus_gives_a_smaller_vocabulary_and_a_warning(caplog):
    tok = BPETokenizer(BPETokenizer.Params(vocab_size=1000))
    with caplog.at_level(logging.WARNING):
        tok.train(["abc abc"])
    assert tok.is_trained and tok.vocab_size < 1000
    assert "stopped at" in caplog.text
    assert tok.decode(tok.encode("abc é 😀")) == "abc é 😀"


def test_a_merge_that_remakes_an_existing_token_takes_no_rank():
    ranks = ranks_from_merges([(b"a", b"b"), (b"b", b"c"), (b"ab", b"c"), (b"a", b"bc"), (b"c", b"d")])
    assert ranks[b"abc"] == 258 and ranks[b"cd"] == 259 and len(ranks) == 260
    tok = BPETokenizer(BPETokenizer.Params(vocab_size=300), ranks=ranks)
    assert tok.encode("abc") == [258] and tok.encode("abcd") == [258, ord("d")]


def test_pretokenize_accepts_one_string_and_rejects_non_text():
    assert pretokenize("a a") == Counter({"a": 1, " a": 1})
    with pytest.raises(DataError, match="expects texts"):
        pretokenize([b"bytes"])  # type: ignore[list-item]


# --- files ------------------------------------------------------------------------------------


def test_save_load_round_trip(verdict_bpe, verdict: str, tmp_path: Path):
    verdict_bpe.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ranks.tiktoken", "tokenizer.json"]
    state = json.loads((tmp_path / "tokenizer.json").read_text())
    assert state["name"] == "bpe" and state["format_version"] == 1
    assert state["vocab_size"] == 600 and state["special_tokens"] == {EOT: 599}
    assert tiktoken.load.load_tiktoken_bpe(str(tmp_path / "ranks.tiktoken")) == verdict_bpe.ranks
    again = BPETokenizer.load(tmp_path)
    assert again.params == verdict_bpe.params and again.ranks == verdict_bpe.ranks
    assert again.encode(verdict) == verdict_bpe.encode(verdict)
    assert again.encode(BOOK_SENTENCE, allowed_special="all") == verdict_bpe.encode(
        BOOK_SENTENCE, allowed_special="all")
    assert again.fingerprint() == verdict_bpe.fingerprint()


def test_gpt2_bpe_loads_without_gpt2s_files(gpt2_bpe, verdict: str, tmp_path: Path):
    gpt2_bpe.save(tmp_path / "tok")
    state = json.loads((tmp_path / "tok" / "tokenizer.json").read_text())
    state["params"]["gpt2_files"] = str(tmp_path / "gone")  # the files are not needed any more
    (tmp_path / "tok" / "tokenizer.json").write_text(json.dumps(state))
    again = BPETokenizer.load(tmp_path / "tok")
    assert again.vocab_size == 50257 and again.encode(verdict) == gpt2_bpe.encode(verdict)


def test_load_errors(verdict_bpe, tmp_path: Path):
    with pytest.raises(DataError, match="cannot load 'bpe'"):
        BPETokenizer.load(tmp_path)
    verdict_bpe.save(tmp_path)
    state = json.loads((tmp_path / "tokenizer.json").read_text())
    (tmp_path / "tokenizer.json").write_text(json.dumps({**state, "format_version": 99}))
    with pytest.raises(DataError, match="format_version 99"):
        BPETokenizer.load(tmp_path)
    (tmp_path / "tokenizer.json").write_text(json.dumps({**state, "vocab_size": 601}))
    with pytest.raises(DataError, match="does not match"):
        BPETokenizer.load(tmp_path)
    (tmp_path / "tokenizer.json").write_text(json.dumps({**state, "name": "char"}))
    with pytest.raises(DataError, match="not hold a 'bpe'"):
        BPETokenizer.load(tmp_path)


# --- errors -----------------------------------------------------------------------------------


def test_untrained_tokenizer_says_how_to_fix_it():
    tok = BPETokenizer(BPETokenizer.Params())
    assert not tok.is_trained
    for call in (lambda: tok.encode("hi"), lambda: tok.decode([1]), lambda: tok.vocab_size,
                 lambda: tok.save("unused")):
        with pytest.raises(DataError, match="not trained yet.*gpt2_files"):
            call()


def test_bad_params_are_rejected():
    with pytest.raises(ValidationError, match="vocab_size 200 is too small: it needs at least 258"):
        BPETokenizer.Params(vocab_size=200, special_tokens=["<a>", "<b>"])
    BPETokenizer.Params(vocab_size=256, special_tokens=[])
    with pytest.raises(ValidationError, match="not a valid regex"):
        BPETokenizer.Params(pattern="(")
    with pytest.raises(ValidationError, match="not usable by tiktoken"):
        BPETokenizer.Params(pattern=r"\X")  # the `regex` module knows \X, tiktoken does not
    with pytest.raises(ValidationError, match="empty string"):
        BPETokenizer.Params(pattern=r"\w*")
    with pytest.raises(ValidationError, match="listed twice"):
        BPETokenizer.Params(special_tokens=[EOT, EOT])
    with pytest.raises(ValidationError, match="extra"):
        BPETokenizer.Params.model_validate({"vocab": 300})


def test_other_errors(gpt2_bpe, tmp_path: Path):
    with pytest.raises(DataError, match="encoder.json and vocab.bpe"):
        BPETokenizer(BPETokenizer.Params(gpt2_files=str(tmp_path)))
    with pytest.raises(DataError, match="gpt2_files is set"):
        gpt2_bpe.train(["text"])
    with pytest.raises(DataError, match=r"token id 50257 is outside the 'bpe' vocabulary \(0..50256\)"):
        gpt2_bpe.decode([1, 50257])
    with pytest.raises(DataError, match="token id -1"):
        gpt2_bpe.decode([-1])


def _bpe_registry():
    import llmbricks
    from llmbricks.core.registry import Registry

    @llmbricks.hookimpl
    def llmbricks_components():
        return [BPETokenizer]

    return Registry({"bpe_only": types.SimpleNamespace(llmbricks_components=llmbricks_components)},
                    entry_points=False)


def test_config_loading_rejects_a_too_small_vocabulary():
    from llmbricks.core.config import load_config

    registry = _bpe_registry()
    raw = {"model": {"tokenizer": {"name": "bpe", "vocab_size": 100}}}
    with pytest.raises(ConfigError, match="model.tokenizer.*vocab_size 100 is too small"):
        load_config(raw, registry=registry)


def test_conformance():
    from llmbricks.testing import check_component

    registry = _bpe_registry()
    passed = check_component("tokenizer", "bpe", registry=registry, params={"vocab_size": 300})
    assert {"round trip", "save/load", "strict params"} <= set(passed)
    check_component("tokenizer", "bpe", registry=registry)  # defaults: a too-big target is fine
