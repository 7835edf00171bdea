"""Text input is UTF-8 or one line naming where, the byte offset and the bytes (issue 16, point 4)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from llmbricks.core.errors import DataError, InputError
from llmbricks.core.store.text_input import check_text, decode_text, read_text, show_bytes
from llmbricks.core.train.windows import check_split_windows
from llmbricks.plugins.data import textio
from llmbricks.plugins.data.text import TextSource


def test_input_error_is_a_data_error_that_exits_2() -> None:
    assert issubclass(InputError, DataError) and InputError.exit_code == 2


@pytest.mark.parametrize(("data", "offset", "shown"), [
    (b"abc\xff", 3, "(0xff: invalid start byte)"),
    ("é€".encode() + b"\xfe\xff", 5, "(0xfe: invalid start byte)"),  # 2 + 3 bytes before it
    ("日本".encode() + b"\xc3(", 6, "(0xc3: invalid continuation byte)"),
    ("ab€".encode()[:-1], 2, "(0xe2 0x82: unexpected end of data)"),  # cut at the end of the file
    (b"\xed\xa0\x80", 0, "(0xed: invalid continuation byte)"),  # an encoded surrogate is not UTF-8
], ids=["ascii", "after-multibyte", "bad-continuation", "truncated-at-end", "encoded-surrogate"])
def test_read_text_names_the_byte_offset(tmp_path: Path, data: bytes, offset: int, shown: str) -> None:
    path = tmp_path / "corpus.txt"
    path.write_bytes(data)
    with pytest.raises(InputError) as err:
        read_text(path, "data.source.path")
    message = str(err.value)
    assert message.startswith(f"{path} (data.source.path): invalid UTF-8 at byte offset {offset} ")
    assert shown in message and "iconv" in message and "\n" not in message


def test_read_text_drops_a_leading_bom_only(tmp_path: Path) -> None:
    path = tmp_path / "bom.txt"
    path.write_bytes(b"\xef\xbb\xbfhello \xef\xbb\xbfworld")
    assert read_text(path) == "hello \ufeffworld"  # a BOM inside the text is a character, kept
    assert decode_text(b"\xef\xbb\xbf", "stdin") == ""


def test_read_text_directory_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="is a directory, not a text file"):
        read_text(tmp_path, "--file")
    with pytest.raises(InputError, match=r"nope\.txt \(--file\): no such file"):
        read_text(tmp_path / "nope.txt", "--file")


def test_decode_text_names_the_source() -> None:
    assert decode_text("héllo".encode(), "standard input") == "héllo"
    with pytest.raises(InputError, match=r"^standard input: invalid UTF-8 at byte offset 1 \(0xe9"):
        decode_text("héllo".encode("latin-1"), "standard input")


def test_check_text_reports_surrogate_escaped_bytes_at_their_original_offset() -> None:
    raw = "é€".encode() + b"\xff\xfe" + b"tail"
    text = os.fsdecode(raw)  # what sys.argv holds for these bytes on a UTF-8 system
    assert "\udcff" in text
    with pytest.raises(InputError) as err:
        check_text(text, "--prompt")
    assert str(err.value).startswith("--prompt: invalid UTF-8 at byte offset 5 (0xff 0xfe)")


def test_check_text_passes_text_through_and_names_other_surrogates() -> None:
    text = "naïve 日本 🎉"
    assert check_text(text, "TEXT") is text
    with pytest.raises(InputError, match=r"lone surrogate U\+D800 at character 2"):
        check_text("ab\ud800c", "record 1")


def test_show_bytes_caps_what_it_shows() -> None:
    assert show_bytes(b"\x00\x01") == "0x00 0x01"
    assert show_bytes(bytes(range(6))) == "0x00 0x01 0x02 0x03 ..."


# --- corpora read by the data sources (textio) --------------------------------------------------

def corpus_text(path: Path, **params: object) -> str:
    return "".join(TextSource(TextSource.Params(path=str(path), **params)))


@pytest.mark.parametrize("chunk", [1, 2, 3, 1 << 20])
def test_a_corpus_bom_is_dropped_at_any_chunk_size(tmp_path: Path, chunk: int,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(textio, "CHUNK_BYTES", chunk)
    path = tmp_path / "bom.txt"
    path.write_bytes(b"\xef\xbb\xbfcaf\xc3\xa9")
    assert corpus_text(path) == "café"
    assert corpus_text(path, encoding="latin-1") == "ï»¿cafÃ©"  # another encoding: bytes as they are


def test_a_bad_byte_in_a_corpus_is_an_input_error_with_offset_and_fix(tmp_path: Path) -> None:
    path = tmp_path / "latin.txt"
    path.write_bytes("naïve café".encode("latin-1"))
    with pytest.raises(InputError) as err:
        corpus_text(path)
    message = str(err.value)
    assert message.startswith(f"{path}: invalid UTF-8 at byte offset 2 (0xef: invalid continuation")
    assert "encoding" in message and "errors: replace" in message
    assert corpus_text(path, encoding="latin-1") == "naïve café"
    assert corpus_text(path, errors="replace") == "na\ufffdve caf\ufffd"


@pytest.mark.parametrize("chunk", [2, 1 << 20])
def test_a_nul_byte_is_refused_with_its_offset(tmp_path: Path, chunk: int,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(textio, "CHUNK_BYTES", chunk)
    path = tmp_path / "binary.bin"
    path.write_bytes(b"hello\x00\x00\x00")
    with pytest.raises(InputError, match=r"a NUL character at byte offset 5: this is a binary file"):
        corpus_text(path)


def test_utf16_nuls_are_not_mistaken_for_binary(tmp_path: Path) -> None:
    path = tmp_path / "wide.txt"
    path.write_bytes("hello".encode("utf-16-le"))
    assert corpus_text(path, encoding="utf-16-le") == "hello"
    with pytest.raises(InputError, match="NUL character at byte offset 1"):  # read as UTF-8
        corpus_text(path)


def test_an_empty_corpus_is_an_input_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match=r"empty\.txt: the corpus is empty \(0 characters"):
        corpus_text(empty)
    (tmp_path / "b.txt").write_bytes(b"")
    with pytest.raises(InputError, match=r"\(2 files\): the corpus is empty"):
        corpus_text(tmp_path)


def test_require_file_says_what_the_path_is(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="is a directory, not a file"):
        textio.require_file(tmp_path, "x `path`")
    with pytest.raises(InputError, match="does not exist"):
        textio.require_file(tmp_path / "none", "x `path`")


# --- splits too short for one window ------------------------------------------------------------

def test_check_split_windows_gives_tokens_had_and_needed() -> None:
    check_split_windows(17, 17, 16, 0.5)  # each split holds exactly one window
    check_split_windows(17, 0, 16, 0.0)  # no validation asked for
    with pytest.raises(InputError, match=r"the training split \(of 10 tokens in all\) has 9 tokens but "
                                         r"one window needs 17 \(context_length 16 \+ 1"):
        check_split_windows(9, 1, 16, 0.1)
    with pytest.raises(InputError, match=r"the validation split \(0.1 of 1020 tokens\) has 20 tokens "
                                         r"but one window needs 65.*raise data.val_fraction"):
        check_split_windows(1000, 20, 64, 0.1)
