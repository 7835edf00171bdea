"""Classification data: balancing, the book's split and batch counts, padding, metrics, errors."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from llmbricks.core.errors import ConfigError, DataError
from llmbricks.core.registry import get_registry
from llmbricks.core.tasks.classification import (
    LabeledBatches,
    balance_rows,
    check_num_classes,
    collate,
    pad_id,
    padded_length,
    prepare_labeled,
    split_rows,
)
from llmbricks.core.tasks.classifier import classification_report
from tests.conftest import need_data

BOOK = {"balance": True, "fractions": (0.7, 0.1, 0.2), "seed": 123}


def build(kind: str, spec):
    return get_registry().build(kind, spec)


@pytest.fixture(scope="module")
def spam():
    """SMS Spam with GPT-2's tokenizer: the book's chapter 6 setting."""
    need_data("gpt2.tiktoken", "SMSSpamCollection")
    tokenizer = build("tokenizer", "tiktoken")
    data = prepare_labeled(build("datasource", "sms_spam"), tokenizer, context=1024, **BOOK)
    return data, tokenizer


def test_balancing_undersamples_to_the_smallest_class_seeded():
    rows = [(f"h{i}", "ham") for i in range(10)] + [(f"s{i}", "spam") for i in range(3)]
    kept = balance_rows(rows, seed=1)
    assert Counter(label for _, label in kept) == {"ham": 3, "spam": 3}
    assert kept == balance_rows(rows, seed=1) and kept != balance_rows(rows, seed=2)
    assert kept == [r for r in rows if r in kept]  # file order is kept


def test_the_books_balanced_split_is_1045_149_300(spam):
    data, _ = spam
    assert data.labels == ["ham", "spam"] and data.rows == 5574
    assert data.counts == {"ham": 747, "spam": 747} and data.balanced_rows == 1494
    assert {s: data.size(s) for s in data.splits} == {"train": 1045, "val": 149, "test": 300}


def test_book_row_order_draws_what_pandas_draws_in_the_books_functions():
    """create_balanced_dataset + random_split, written with pandas as the book writes them."""
    pd = pytest.importorskip("pandas")
    rows = [(f"t{i}", "spam" if i % 4 == 1 else "ham") for i in range(41)]
    df = pd.DataFrame(rows, columns=["Text", "Label"])
    spam_rows = df[df["Label"] == "spam"]
    ham_subset = df[df["Label"] == "ham"].sample(len(spam_rows), random_state=123)
    balanced = pd.concat([ham_subset, spam_rows]).sample(frac=1, random_state=123)
    train_end = int(len(balanced) * 0.7)
    val_end = train_end + int(len(balanced) * 0.1)
    book = {"train": balanced[:train_end], "val": balanced[train_end:val_end],
            "test": balanced[val_end:]}
    kept = balance_rows(rows, seed=123, order="book")
    assert kept == [tuple(r) for r in pd.concat([ham_subset, spam_rows]).itertuples(index=False)]
    ours = split_rows(kept, (0.7, 0.1, 0.2), seed=123, row_order="book")
    for name, part in book.items():
        assert ours[name] == [tuple(r) for r in part.itertuples(index=False)], name


def test_the_books_very_rows_pad_to_its_120_tokens(spam):
    """The seeded order keeps the book's sizes; the book's order also its rows (longest: 120)."""
    _, tokenizer = spam
    book = prepare_labeled(build("datasource", "sms_spam"), tokenizer, context=1024, **BOOK,
                           row_order="book")
    assert {s: book.size(s) for s in book.splits} == {"train": 1045, "val": 149, "test": 300}
    assert padded_length("longest", book.splits["train"][0], None, 1024) == 120


def test_the_books_batch_counts_are_130_19_38(spam):
    data, tokenizer = spam
    length = padded_length("longest", data.splits["train"][0], None, 1024)
    pad = pad_id(tokenizer)
    assert pad == 50256  # GPT-2's <|endoftext|>, the book's padding token
    train = LabeledBatches(*data.splits["train"], 8, length, pad)  # drop_last, shuffled
    val = LabeledBatches(*data.splits["val"], 8, length, pad, shuffle=False, drop_last=False)
    test = LabeledBatches(*data.splits["test"], 8, length, pad, shuffle=False, drop_last=False)
    assert (len(train), len(val), len(test)) == (130, 19, 38)
    ids, lengths, labels = next(train.epoch(0))
    assert ids.shape == (8, length) and labels.shape == (8,)
    assert all(bool((row[n:] == pad).all()) for row, n in zip(ids, lengths.tolist(), strict=True))


def test_split_cuts_like_the_book():
    rows = [(str(i), "a") for i in range(10)]
    parts = split_rows(rows, (0.7, 0.1, 0.2), seed=0)
    assert [len(parts[s]) for s in ("train", "val", "test")] == [7, 1, 2]
    assert sorted(sum(parts.values(), [])) == sorted(rows)  # a partition
    smaller = split_rows(rows, (0.5, 0.2, 0.1), seed=0)  # not summing to 1: test is int(n * 0.1)
    assert [len(smaller[s]) for s in ("train", "val", "test")] == [5, 2, 1]


def test_longest_pads_to_the_longest_training_text_and_cuts_longer_val_texts():
    train = [[1, 2], [3, 4, 5]]
    assert padded_length("longest", train, None, context=16) == 3
    assert padded_length("longest", train, 2, context=16) == 2  # max_length caps it
    assert padded_length("longest", [[1] * 40], None, context=16) == 16  # never past the context
    ids, lengths, _ = collate([[7, 8, 9, 10, 11], [6]], [0, 1], 3, pad=0)
    assert ids.tolist() == [[7, 8, 9], [6, 0, 0]] and lengths.tolist() == [3, 1]


def test_fixed_pads_or_cuts_to_max_length():
    assert padded_length("fixed", [[1]], 5, context=16) == 5
    ids, lengths, _ = collate([[1, 2, 3, 4, 5, 6], [1]], [0, 0], 5, pad=9)
    assert ids.tolist() == [[1, 2, 3, 4, 5], [1, 9, 9, 9, 9]] and lengths.tolist() == [5, 1]
    with pytest.raises(ConfigError, match="max_length: 32 is longer than model.context_length 16"):
        padded_length("fixed", [[1]], 32, context=16)
    with pytest.raises(ConfigError, match="fixed needs train.trainer.max_length"):
        padded_length("fixed", [[1]], None, context=16)


def test_none_does_not_pad():
    assert padded_length("none", [[1, 2]], None, context=16) is None
    ids, lengths, labels = collate([[4, 5, 6]], [1], None, pad=0)
    assert ids.tolist() == [[4, 5, 6]] and lengths.tolist() == [3] and labels.tolist() == [1]
    empty, n, _ = collate([[]], [0], None, pad=7)  # an empty text: one pad token, length 1
    assert empty.tolist() == [[7]] and n.tolist() == [1]


def test_texts_are_cut_to_the_context(spam):
    _, tokenizer = spam
    data = prepare_labeled(build("datasource", "sms_spam"), tokenizer, context=10, **BOOK)
    assert max(len(ids) for ids in data.splits["train"][0]) == 10


def test_pad_id_is_0_without_endoftext():
    tokenizer = build("tokenizer", "char")
    tokenizer.train(["abc"])
    assert pad_id(tokenizer) == 0


def test_batches_restart_mid_epoch_and_shard_across_ranks():
    ids, labels = [[i] for i in range(20)], [i % 2 for i in range(20)]
    one = LabeledBatches(ids, labels, 4, 1, 0, seed=3)
    whole = list(one.epoch(2))
    assert [b[0].tolist() for b in one.epoch(2, start=2)] == [b[0].tolist() for b in whole[2:]]
    assert [b[0].tolist() for b in one.epoch(1)] != [b[0].tolist() for b in whole]
    halves = [LabeledBatches(ids, labels, 2, 1, 0, seed=3, rank=r, world_size=2) for r in (0, 1)]
    for step, (a, b) in enumerate(zip(halves[0].epoch(2), halves[1].epoch(2), strict=True)):
        assert torch.equal(torch.cat([a[0], b[0]]), whole[step][0])


def test_metrics_on_hand_made_predictions():
    # true:      a a a b b c
    # predicted: a a b b c c
    report = classification_report([0, 0, 1, 1, 2, 2], [0, 0, 0, 1, 1, 2], ["a", "b", "c"])
    assert report["accuracy"] == pytest.approx(4 / 6)
    assert report["confusion"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert report["precision"] == pytest.approx({"a": 1.0, "b": 0.5, "c": 0.5})
    assert report["recall"] == pytest.approx({"a": 2 / 3, "b": 0.5, "c": 1.0})
    assert report["f1"] == pytest.approx({"a": 0.8, "b": 0.5, "c": 2 / 3})
    assert report["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert report["support"] == {"a": 3, "b": 2, "c": 1}
    never = classification_report([0, 0], [0, 1], ["a", "b"])  # b never predicted: 0, not NaN
    assert never["precision"]["b"] == 0.0 and never["f1"]["b"] == 0.0


def test_a_label_count_that_differs_from_the_head_is_a_config_error():
    with pytest.raises(ConfigError, match=r"num_classes is 3 but the data has 2 labels \(ham, "
                                          r"spam\); set --set model.head.num_classes=2"):
        check_num_classes(["ham", "spam"], 3)


def labeled(tmp_path, text: str, **params):
    path = tmp_path / "rows.csv"
    path.write_text(text, encoding="utf-8")
    return build("datasource", {"name": "labeled_text", "path": str(path), **params})


def char_tokenizer():
    tokenizer = build("tokenizer", "char")
    tokenizer.train(["abcdefghijklmnopqrstuvwxyz0123456789 "])
    return tokenizer


def test_a_class_missing_from_a_split_is_named(tmp_path):
    rows = "".join(f"ham text {i},ham\n" for i in range(20)) + "spam 1,spam\n"
    source = labeled(tmp_path, "text,label\n" + rows)
    with pytest.raises(DataError, match=r"class 'spam' has no examples in the (val|test|train) "
                                        r"split \(1 rows of 'spam' in all\); add rows of that "
                                        "class"):
        prepare_labeled(source, char_tokenizer(), context=16, balance=False,
                        fractions=(0.7, 0.1, 0.2), seed=0)


def test_too_few_rows_is_a_data_error(tmp_path):
    source = labeled(tmp_path, "text,label\na,x\nb,y\nc,x\nd,y\n")
    with pytest.raises(DataError, match=r"4 labeled rows are too few: the val split \(0.1 of "
                                        r"them\) is empty"):
        prepare_labeled(source, char_tokenizer(), context=16, balance=False,
                        fractions=(0.7, 0.1, 0.2), seed=0)


def test_a_missing_label_column_names_the_column(tmp_path):
    source = labeled(tmp_path, "text,category\nhello,a\n", label_column="label")
    with pytest.raises(DataError, match="no column 'label' for label_column"):
        prepare_labeled(source, char_tokenizer(), context=16, **BOOK)


def test_a_single_class_is_refused(tmp_path):
    source = labeled(tmp_path, "text,label\na,x\nb,x\n")
    with pytest.raises(DataError, match="every row has the label 'x'"):
        prepare_labeled(source, char_tokenizer(), context=16, **BOOK)


def test_integer_labels_sort_as_numbers(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(f'{{"text": "t{i}", "label": {i % 11}}}\n' for i in range(440)))
    source = build("datasource", {"name": "labeled_text", "path": str(path)})
    data = prepare_labeled(source, char_tokenizer(), context=16, balance=False,
                           fractions=(0.5, 0.25, 0.25), seed=0)
    assert data.labels == [str(i) for i in range(11)]
