"""The token pipeline: cache, split, sliding windows, loaders (with the book's numbers)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from llmbricks.core.component import ParamsModel
from llmbricks.core.errors import DataError
from llmbricks.core.interfaces import DataSource
from llmbricks.core.registry import get_registry
from llmbricks.core.store.token_cache import (
    TokenCache,
    build_token_cache,
    split_tokens,
    text_chunks,
    token_dtype,
)
from llmbricks.core.train.windows import (
    SlidingWindowDataset,
    make_loader,
)
from tests.conftest import need_data

DATA = Path(os.environ.get("LLMBRICKS_DATA_DIR", Path(__file__).resolve().parents[3] / "shared" / "data"))


class ListSource(DataSource):
    """Texts from a Python list (for tests)."""

    name = "list"

    class Params(ParamsModel):
        texts: list[str] = []

    def __iter__(self):
        return iter(self.params.texts)


def listed(*texts: str) -> ListSource:
    return ListSource(ListSource.Params(texts=list(texts)))


def char_tokenizer(text: str):
    tok = get_registry().build("tokenizer", "char")
    tok.train([text])
    return tok


@pytest.fixture
def gpt2():
    need_data("gpt2.tiktoken")
    return get_registry().build("tokenizer", "tiktoken")


@pytest.fixture
def verdict() -> str:
    need_data("the-verdict.txt")
    return (DATA / "the-verdict.txt").read_text(encoding="utf-8")


def test_token_dtype():
    assert token_dtype(50257) == np.uint16
    assert token_dtype(65536) == np.uint16
    assert token_dtype(65537) == np.uint32
    assert token_dtype(100277) == np.uint32


def test_the_books_first_batch(gpt2, verdict, tmp_path):
    cache = build_token_cache(listed(verdict), gpt2, tmp_path)
    assert len(cache) == 5145 and cache.info.dtype == "uint16"
    loader = make_loader(cache.tokens, max_length=4, stride=1, batch_size=1, shuffle=False)
    inputs, targets = next(iter(loader))
    assert inputs.tolist() == [[40, 367, 2885, 1464]]
    assert targets.tolist() == [[367, 2885, 1464, 1807]]
    assert inputs.dtype == torch.int64


def book_windows(tokens: list[int], max_length: int, stride: int) -> list[tuple[list[int], list[int]]]:
    """The book's GPTDatasetV1, which stores every window."""
    return [(tokens[i:i + max_length], tokens[i + 1:i + max_length + 1])
            for i in range(0, len(tokens) - max_length, stride)]


@settings(max_examples=80, deadline=None)
@given(n=st.integers(0, 200), max_length=st.integers(1, 40), stride=st.integers(1, 50))
def test_sliding_windows_match_the_book(n, max_length, stride):
    tokens = np.arange(n, dtype=np.uint16)
    dataset = SlidingWindowDataset(tokens, max_length, stride)
    expected = book_windows(list(range(n)), max_length, stride)
    assert len(dataset) == len(expected)
    for i, (x, y) in enumerate(expected):
        got_x, got_y = dataset[i]
        assert got_x.tolist() == x and got_y.tolist() == y


def test_dataset_stores_the_token_array_once():
    tokens = np.zeros(10_000_000, dtype=np.uint16)
    dataset = SlidingWindowDataset(tokens, max_length=256, stride=1)
    assert len(dataset) == 10_000_000 - 256
    assert dataset.tokens is tokens  # windows are sliced on access, never stored
    assert set(vars(dataset)) == {"tokens", "max_length", "stride"}


def test_loader_is_seeded():
    tokens = np.arange(1000, dtype=np.uint16)

    def batches(seed):
        return [x.tolist() for x, _ in make_loader(tokens, max_length=8, batch_size=4, seed=seed)]

    assert batches(1) == batches(1)
    assert batches(1) != batches(2)
    ordered = [x for x, _ in make_loader(tokens, max_length=8, batch_size=4, shuffle=False)]
    assert ordered[0][0].tolist() == list(range(8))


def test_drop_last():
    tokens = np.arange(100, dtype=np.uint16)
    kept = list(make_loader(tokens, max_length=10, batch_size=4, shuffle=False, drop_last=False))
    dropped = list(make_loader(tokens, max_length=10, batch_size=4, shuffle=False))
    assert len(kept) == 3 and len(dropped) == 2  # 9 windows


def test_random_windows_are_contiguous_slices():
    tokens = np.arange(5000, dtype=np.uint16)
    loader = make_loader(tokens, max_length=16, batch_size=8, sampler="random", seed=3, num_samples=64)
    batches = list(loader)
    assert len(batches) == 8
    for x, y in batches:
        assert torch.equal(x[:, 1:] - x[:, :-1], torch.ones(8, 15, dtype=torch.int64))
        assert torch.equal(y, x + 1)
    again = [x.tolist() for x, _ in make_loader(tokens, max_length=16, batch_size=8, sampler="random", seed=3, num_samples=64)]
    assert again == [x.tolist() for x, _ in batches]


def test_too_few_tokens_is_a_clear_error():
    with pytest.raises(DataError, match=r"has 5 tokens but one window needs 9 \(context_length 8 \+ 1"):
        make_loader(np.arange(5, dtype=np.uint16), max_length=8, batch_size=1)


def test_split_is_contiguous():
    tokens = np.arange(1000)
    train, val = split_tokens(tokens, 0.1)
    assert len(train) == 900 and len(val) == 100
    assert train[-1] + 1 == val[0]


def test_cache_roundtrip_and_reuse(tmp_path):
    text = "hello world\n" * 50
    tok = char_tokenizer(text)
    cache = build_token_cache(listed(text[:300], text[300:]), tok, tmp_path)
    assert cache.tokens.tolist() == tok.encode(text)
    assert isinstance(cache.tokens, np.memmap) and cache.info.dtype == "uint16"
    assert cache.info.distinct_ids == len(set(text)) and cache.info.n_chars == len(text)
    stamp = cache.path.stat().st_mtime_ns
    again = build_token_cache(listed(text), tok, tmp_path)  # same content, other pieces
    assert again.directory == cache.directory and again.path.stat().st_mtime_ns == stamp
    other = build_token_cache(listed(text + "!"), char_tokenizer(text + "!"), tmp_path)
    assert other.directory != cache.directory


@pytest.mark.data_files("tinyshakespeare.txt")
def test_chunked_tokenization_equals_whole_text(gpt2, tmp_path):
    text = (DATA / "tinyshakespeare.txt").read_text(encoding="utf-8")[:300_000]
    cache = build_token_cache(listed(text), gpt2, tmp_path, chunk_chars=10_000)
    assert cache.tokens.tolist() == gpt2.encode(text)


def test_text_chunks_rejoin_exactly():
    text = "First line\n\nSecond  line here\n  indented\nlast"
    for size in (3, 5, 8, 13):
        chunks = list(text_chunks([text[:7], text[7:]], size))
        assert "".join(chunks) == text


class Failing(ListSource):
    """A source that breaks after its first piece."""

    name = "failing"

    def __iter__(self):
        yield self.params.texts[0]
        raise OSError("disk went away")


def test_an_interrupted_build_leaves_no_cache(tmp_path):
    text = "abc " * 1000
    tok = char_tokenizer(text)
    source = Failing(Failing.Params(texts=[text]))
    with pytest.raises(OSError):
        build_token_cache(source, tok, tmp_path)
    leftovers = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert leftovers == []
    with pytest.raises(DataError, match="not a complete token cache"):
        TokenCache(tmp_path)


def test_labeled_sources_cannot_be_cached(tmp_path):
    class Labeled(ListSource):
        """Labeled rows."""

        name = "labeled"
        records = "labeled"

    with pytest.raises(DataError, match="yields labeled records, not text"):
        build_token_cache(Labeled(Labeled.Params(texts=["a"])), char_tokenizer("a"), tmp_path)


def test_uint32_cache_for_big_vocabularies(tmp_path):
    from llmbricks.plugins.tokenizers.char import CharTokenizer

    class WideChar(CharTokenizer):
        """Char ids shifted past 65,535, to need uint32."""

        name = "wide"

        @property
        def vocab_size(self):
            return 70_000

        def encode(self, text, allowed_special=()):
            return [66_000 + i for i in super().encode(text)]

    tok = WideChar(WideChar.Params())
    tok.train(["abc"])
    cache = build_token_cache(listed("abcabc"), tok, tmp_path)
    assert cache.info.dtype == "uint32"
    assert cache.tokens.tolist() == [66_000, 66_001, 66_002] * 2


@pytest.mark.parametrize("spec", [
    "python_docs",
    pytest.param("the_verdict", marks=pytest.mark.data_files("the-verdict.txt")),
    pytest.param("tinyshakespeare", marks=pytest.mark.data_files("tinyshakespeare.txt")),
])
def test_char_tokenizer_works_with_every_text_source(spec, tmp_path):
    source = get_registry().build("datasource", spec)
    tok = get_registry().build("tokenizer", "char")
    tok.train(iter(source))
    cache = build_token_cache(source, tok, tmp_path)
    text = "".join(source)
    assert len(cache) == len(text)
    assert tok.decode(cache.tokens[:500].tolist()) == text[:500]


def test_char_tokenizer_with_a_text_directory(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("alpha\n")
    (tmp_path / "docs" / "b.txt").write_text("beta\n")
    source = get_registry().build("datasource", {"name": "text", "path": str(tmp_path / "docs")})
    tok = get_registry().build("tokenizer", "char")
    tok.train(iter(source))
    cache = build_token_cache(source, tok, tmp_path / "cache")
    assert tok.decode(cache.tokens.tolist()) == "alpha\nbeta\n"


@pytest.mark.parametrize("n, fraction, n_train", [
    (1_115_394, 0.1, 1_003_854),   # tiny shakespeare: nanoGPT's data[:int(n * 0.9)]
    (5_145, 0.1, 4_630),           # the-verdict in GPT-2 tokens: the book's int(0.9 * len)
    (10, 0.3, 7),                  # 10 * 0.7 is 6.999... in binary floating point
    (7, 0.0, 7),
])
def test_split_floors_like_the_book_and_nanogpt(n, fraction, n_train):
    train, val = split_tokens(np.arange(n), fraction)
    assert (len(train), len(val)) == (n_train, n - n_train)


@pytest.mark.data_files("tinyshakespeare.txt")
def test_tiny_shakespeare_validation_split_is_nanogpts_to_the_character():
    import os
    from pathlib import Path

    text = (Path(os.environ["LLMBRICKS_DATA_DIR"]) / "tinyshakespeare.txt").read_text()
    tok = char_tokenizer(text)
    assert tok.vocab_size == 65 and tok.decode(list(range(65))) == "".join(sorted(set(text)))
    _, val = split_tokens(np.array(tok.encode(text)), 0.1)
    assert tok.decode(val.tolist()) == text[int(len(text) * 0.9):]  # nanoGPT's val_data
