"""The built-in data sources: named corpora, text files, labeled and instruction files.

The named corpora come from ``$LLMBRICKS_DATA_DIR`` (``make test`` points it at ../shared/data);
downloads are switched off here, so no test reaches the network.
"""

from __future__ import annotations

import collections
import json
from pathlib import Path

import pytest
from pydantic import ValidationError

import llmbricks.plugins.data
from llmbricks.core.errors import ComponentError, DataError
from llmbricks.core.registry import Registry
from llmbricks.core.store import datafiles
from llmbricks.plugins.data import corpora, textio
from llmbricks.plugins.data.instruction import InstructionDataSource, InstructionJsonSource
from llmbricks.plugins.data.labeled import LabeledTextSource
from llmbricks.plugins.data.named_text import TheVerdictSource, TinyShakespeareSource
from llmbricks.plugins.data.python_docs import PythonDocsSource
from llmbricks.plugins.data.sms_spam import SmsSpamSource
from llmbricks.plugins.data.text import TextSource
from tests.conftest import need_data

NAMES = ["instruction_data", "instruction_json", "labeled_text", "python_docs", "sms_spam", "text",
         "the_verdict", "tinyshakespeare"]


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry({"data": llmbricks.plugins.data}, entry_points=False)


@pytest.fixture(autouse=True)
def no_downloads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(datafiles.OFFLINE_ENV, "1")
    monkeypatch.setenv(datafiles.CACHE_DIR_ENV, str(tmp_path / "empty-cache"))


@pytest.fixture
def shared_data(request: pytest.FixtureRequest) -> Path:
    """The data dir holding the files the test names (``data_files``); it skips without them."""
    return need_data(*(name for mark in request.node.iter_markers("data_files") for name in mark.args))


def text(source: object) -> str:
    return "".join(source)  # type: ignore[arg-type]


# --- registration and metadata ----------------------------------------------------------------


def test_registers_every_source(registry: Registry) -> None:
    assert registry.names("datasource") == NAMES


# The conformance kit runs on every source in tests/plugins/test_conformance.py.


@pytest.mark.parametrize(("name", "records"), [
    ("text", "text"), ("python_docs", "text"), ("tinyshakespeare", "text"), ("the_verdict", "text"),
    ("sms_spam", "labeled"), ("labeled_text", "labeled"), ("instruction_data", "instruction"),
    ("instruction_json", "instruction"),
])
def test_records_kind(name: str, records: str, registry: Registry) -> None:
    cls = registry.get("datasource", name)
    assert cls.kind == "datasource" and cls.records == records
    for field in cls.Params.model_fields.values():
        assert field.description, f"{name}: every param needs a description"


def test_built_through_the_registry_from_a_spec(registry: Registry, tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("hello", encoding="utf-8")
    spec = registry.resolve("datasource", {"name": "text", "path": str(tmp_path / "a.txt")})
    assert spec.params["encoding"] == "utf-8" and spec.params["separator"] == ""
    assert text(registry.build("datasource", spec)) == "hello"
    with pytest.raises(ComponentError, match="errors"):
        registry.resolve("datasource", {"name": "text", "errors": "ignore"})


def test_remote_files_match_sources_md() -> None:
    assert corpora.KNOWN_FILES["tinyshakespeare"].size == 1_115_394
    assert corpora.SMS_SPAM.member == "SMSSpamCollection"
    assert corpora.SMS_SPAM.url.endswith("sms+spam+collection.zip")
    for source in (TinyShakespeareSource, TheVerdictSource, SmsSpamSource, InstructionDataSource):
        assert source.remote is corpora.KNOWN_FILES[source.name]
        assert len(source.remote.sha256) == 64


# --- named corpora ----------------------------------------------------------------------------


@pytest.mark.data_files("the-verdict.txt")
def test_the_verdict(shared_data: Path) -> None:
    corpus = text(TheVerdictSource(TheVerdictSource.Params()))
    assert len(corpus) == 20_479
    assert corpus.startswith("I HAD always thought Jack Gisburn")


@pytest.mark.data_files("tinyshakespeare.txt")
def test_tinyshakespeare_streams_in_chunks(shared_data: Path) -> None:
    pieces = list(TinyShakespeareSource(TinyShakespeareSource.Params()))
    assert len(pieces) == 2  # 1,115,394 bytes read 1 MiB at a time
    corpus = "".join(pieces)
    assert len(corpus) == 1_115_394
    assert corpus.startswith("First Citizen:\nBefore we proceed any further, hear me speak.")


@pytest.mark.data_files("SMSSpamCollection")
def test_sms_spam(shared_data: Path) -> None:
    rows = list(SmsSpamSource(SmsSpamSource.Params()))
    assert len(rows) == 5_574
    assert collections.Counter(label for _, label in rows) == {"ham": 4_827, "spam": 747}
    assert rows[0] == ("Go until jurong point, crazy.. Available only in bugis n great world la e "
                       "buffet... Cine there got amore wat...", "ham")
    assert all(isinstance(t, str) and t for t, _ in rows)


@pytest.mark.data_files("SMSSpamCollection")
def test_sms_spam_equals_labeled_text_over_the_same_file(shared_data: Path) -> None:
    params = LabeledTextSource.Params(path=str(shared_data / "SMSSpamCollection"), format="tsv",
                                      header=False, text_column=1, label_column=0)
    assert list(LabeledTextSource(params)) == list(SmsSpamSource(SmsSpamSource.Params()))


@pytest.mark.data_files("instruction-data.json")
def test_instruction_data(shared_data: Path) -> None:
    records = list(InstructionDataSource(InstructionDataSource.Params()))
    assert len(records) == 1_100
    assert all(set(r) == {"instruction", "input", "output"} for r in records)
    assert all(isinstance(r[k], str) for r in records for k in r)
    assert records[0]["instruction"] == "Evaluate the following phrase by transforming it into the spelling given."


@pytest.mark.data_files("the-verdict.txt")
def test_named_source_describes_where_it_reads_from(shared_data: Path) -> None:
    assert str(shared_data / "the-verdict.txt") in TheVerdictSource(TheVerdictSource.Params()).describe()
    assert corpora.SMS_SPAM.url in SmsSpamSource(SmsSpamSource.Params()).describe()


def test_named_source_with_an_explicit_path(tmp_path: Path) -> None:
    mine = tmp_path / "verdict.txt"
    mine.write_text("my own copy\n", encoding="utf-8")
    source = TheVerdictSource(TheVerdictSource.Params(path=str(mine)))
    assert text(source) == "my own copy\n"
    assert str(mine) in source.describe()


def test_named_source_missing_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(datafiles.DATA_DIR_ENV, str(tmp_path / "data"))
    with pytest.raises(DataError) as err:
        list(TinyShakespeareSource(TinyShakespeareSource.Params()))
    message = str(err.value)
    assert "tinyshakespeare.txt not found" in message and str(tmp_path / "data") in message
    assert TinyShakespeareSource(TinyShakespeareSource.Params()).describe().endswith(
        corpora.TINYSHAKESPEARE.url)


def test_named_source_download_param_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(datafiles.OFFLINE_ENV)
    monkeypatch.setenv(datafiles.DATA_DIR_ENV, str(tmp_path / "data"))
    with pytest.raises(DataError, match=r"downloads are off \(download: false\)"):
        list(SmsSpamSource(SmsSpamSource.Params(download=False)))


def test_sms_spam_malformed_rows(tmp_path: Path) -> None:
    bad = tmp_path / "sms.tsv"
    bad.write_text("ham\tfine\nspam\tfine too\nno tab here\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"sms\.tsv, line 3: expected 'label<TAB>text'"):
        list(SmsSpamSource(SmsSpamSource.Params(path=str(bad))))
    bad.write_text("ham\tfine\r\neggs\tnot a label\r\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"line 2: label 'eggs' is not 'ham' or 'spam'"):
        list(SmsSpamSource(SmsSpamSource.Params(path=str(bad))))
    bad.write_text('ham\tsays "hi"\tand more\r\n\nspam\tx', encoding="utf-8")
    assert list(SmsSpamSource(SmsSpamSource.Params(path=str(bad)))) == [
        ('says "hi"\tand more', "ham"), ("x", "spam")]


# --- python_docs ------------------------------------------------------------------------------


def test_python_docs_is_deterministic() -> None:
    from pydoc_data.topics import topics

    source = PythonDocsSource(PythonDocsSource.Params())
    first = text(source)
    assert len(first) > 100_000
    assert first == text(PythonDocsSource(PythonDocsSource.Params()))
    assert first == "\n\n".join(topics[k] for k in sorted(topics))
    assert "pydoc_data" in source.describe()


# --- text -------------------------------------------------------------------------------------


def test_text_file(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_bytes("héllo\r\nwörld 😀\n".encode())
    assert text(TextSource(TextSource.Params(path=str(path)))) == "héllo\r\nwörld 😀\n"


def test_text_directory_is_recursive_sorted_and_skips_hidden(tmp_path: Path) -> None:
    root = tmp_path / "corpus"
    (root / "b").mkdir(parents=True)
    (root / ".git").mkdir()
    (root / "b" / "2.txt").write_text("B2", encoding="utf-8")
    (root / "b" / "1.txt").write_text("B1", encoding="utf-8")
    (root / "a.txt").write_text("A", encoding="utf-8")
    (root / "c.md").write_text("C", encoding="utf-8")
    (root / ".hidden.txt").write_text("H", encoding="utf-8")
    (root / ".git" / "config").write_text("G", encoding="utf-8")
    source = TextSource(TextSource.Params(path=str(root)))
    assert [p.relative_to(root).as_posix() for p in source.files()] == [
        "a.txt", "b/1.txt", "b/2.txt", "c.md"]
    assert text(source) == "AB1B2C"
    assert text(TextSource(TextSource.Params(path=str(root), separator="\n\n"))) == "A\n\nB1\n\nB2\n\nC"


def test_text_glob(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "x.txt").write_text("X", encoding="utf-8")
    (tmp_path / "y.md").write_text("Y", encoding="utf-8")
    (tmp_path / "sub" / "z.txt").write_text("Z", encoding="utf-8")
    assert text(TextSource(TextSource.Params(path=str(tmp_path / "*.txt")))) == "X"
    recursive = TextSource(TextSource.Params(path=str(tmp_path / "**" / "*.txt")))
    assert recursive.files() == [tmp_path / "sub" / "z.txt", tmp_path / "x.txt"]  # sorted paths
    assert text(recursive) == "ZX"
    # Matched folders are read whole; a file matched twice is read once.
    assert text(TextSource(TextSource.Params(path=str(tmp_path / "*"), separator="|"))) == "Z|X|Y"
    assert text(TextSource(TextSource.Params(path=str(tmp_path / "**"), separator="|"))) == "Z|X|Y"


def test_text_missing_paths(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"no file matches the glob '.*\*\.nope'"):
        list(TextSource(TextSource.Params(path=str(tmp_path / "*.nope"))))
    with pytest.raises(DataError, match=r"missing\.txt does not exist"):
        list(TextSource(TextSource.Params(path=str(tmp_path / "missing.txt"))))
    with pytest.raises(DataError, match="needs a `path`"):
        list(TextSource(TextSource.Params()))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no files"):
        list(TextSource(TextSource.Params(path=str(tmp_path / "empty"))))


def test_text_non_utf8_names_file_and_byte_offset(tmp_path: Path) -> None:
    path = tmp_path / "bad.txt"
    path.write_bytes(b"abc\xff")
    with pytest.raises(DataError) as err:
        list(TextSource(TextSource.Params(path=str(path))))
    message = str(err.value)
    assert str(path) in message
    assert "byte offset 3" in message and "0xff" in message
    assert "errors: replace" in message
    assert text(TextSource(TextSource.Params(path=str(path), errors="replace"))) == "abc\ufffd"


def test_text_offset_of_a_bad_byte_past_the_first_chunk(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(textio, "CHUNK_BYTES", 4)
    path = tmp_path / "bad.txt"
    path.write_bytes(b"abcdefg\xff")
    with pytest.raises(DataError, match="byte offset 7"):
        list(TextSource(TextSource.Params(path=str(path))))
    # A character's lead byte ends a chunk and the next chunk does not continue it.
    path.write_bytes(b"abc\xc3(def")
    with pytest.raises(DataError, match="byte offset 3"):
        list(TextSource(TextSource.Params(path=str(path))))
    # A character cut off by the end of the file.
    path.write_bytes("ab€".encode()[:-1])
    with pytest.raises(DataError, match="byte offset 2"):
        list(TextSource(TextSource.Params(path=str(path))))


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 7])
def test_text_chunk_boundaries_inside_characters(chunk: int, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(textio, "CHUNK_BYTES", chunk)
    corpus = "a😀bé€\n中文 🎉x" * 3
    path = tmp_path / "u.txt"
    path.write_bytes(corpus.encode())
    pieces = list(TextSource(TextSource.Params(path=str(path))))
    assert "".join(pieces) == corpus
    assert len(pieces) > 1


def test_text_real_1mib_boundary_splits_an_emoji(tmp_path: Path) -> None:
    path = tmp_path / "big.txt"
    corpus = "a" * (textio.CHUNK_BYTES - 2) + "😀" + "z"  # the 4-byte emoji straddles 1 MiB
    path.write_bytes(corpus.encode())
    pieces = list(TextSource(TextSource.Params(path=str(path))))
    assert len(pieces) == 2
    assert "".join(pieces) == corpus


def test_text_other_encodings(tmp_path: Path) -> None:
    path = tmp_path / "latin.txt"
    path.write_bytes("café".encode("latin-1"))
    assert text(TextSource(TextSource.Params(path=str(path), encoding="latin-1"))) == "café"
    with pytest.raises(ValidationError, match="unknown text encoding"):
        TextSource.Params(encoding="no-such-codec")


def test_iter_lines_keeps_terminators(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(textio, "CHUNK_BYTES", 3)
    path = tmp_path / "lines.txt"
    path.write_bytes(b"one\r\ntwo\n\nthree\x0cfour\nlast")
    assert list(textio.iter_lines(path)) == ["one\r\n", "two\n", "\n", "three\x0cfour\n", "last"]


# --- labeled_text -----------------------------------------------------------------------------


def labeled(path: Path, **params: object) -> list[tuple[str, object]]:
    return list(LabeledTextSource(LabeledTextSource.Params(path=str(path), **params)))


def test_labeled_csv(tmp_path: Path) -> None:
    path = tmp_path / "reviews.csv"
    path.write_text('id,label,text\n1,pos,"great, really"\n2,neg,"bad\nand long"\n\n3,pos,ok\n',
                    encoding="utf-8")
    assert labeled(path) == [("great, really", "pos"), ("bad\nand long", "neg"), ("ok", "pos")]


def test_labeled_tsv_keeps_quotes(tmp_path: Path) -> None:
    path = tmp_path / "data.tsv"
    path.write_text('sentence\tclass\n"quoted" text\t1\nplain\t0\n', encoding="utf-8")
    assert labeled(path, text_column="sentence", label_column="class") == [
        ('"quoted" text', "1"), ("plain", "0")]


def test_labeled_without_header_by_column_number(tmp_path: Path) -> None:
    path = tmp_path / "data.txt"
    path.write_text("spam\tbuy now\nham\thello\n", encoding="utf-8")
    assert labeled(path, format="tsv", header=False, text_column=1, label_column=0) == [
        ("buy now", "spam"), ("hello", "ham")]
    with pytest.raises(DataError, match="is a name but `header` is false"):
        labeled(path, format="tsv", header=False)


def test_labeled_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text('{"text": "a", "label": 1}\n\n{"text": "b", "label": "x", "extra": 0}\n',
                    encoding="utf-8")
    assert labeled(path) == [("a", 1), ("b", "x")]


def test_labeled_errors(tmp_path: Path) -> None:
    csv_path = tmp_path / "data.csv"
    csv_path.write_text("text,labl\nhi,a\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"no column 'label' for label_column - did you mean 'labl'\?"):
        labeled(csv_path)
    csv_path.write_text("text,label\nhi,a\nonly-one-field\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"data\.csv, line 3: the row has 1 field"):
        labeled(csv_path)
    csv_path.write_text("text,label\n", encoding="utf-8")
    with pytest.raises(DataError, match="no labeled rows"):
        labeled(csv_path)
    jsonl = tmp_path / "data.jsonl"
    jsonl.write_text('{"text": "a", "label": 1}\n{"text": "b"\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"data\.jsonl, line 2: invalid JSON"):
        labeled(jsonl)
    jsonl.write_text('{"text": "a", "lbl": 1}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"line 1: no key 'label'"):
        labeled(jsonl)
    jsonl.write_text('{"text": 3, "label": 1}\n', encoding="utf-8")
    with pytest.raises(DataError, match="not a string"):
        labeled(jsonl)
    other = tmp_path / "data.dat"
    other.write_text("x", encoding="utf-8")
    with pytest.raises(DataError, match="set `format: csv`, `tsv` or `jsonl`"):
        labeled(other)
    with pytest.raises(DataError, match="needs a `path`"):
        list(LabeledTextSource(LabeledTextSource.Params()))
    with pytest.raises(DataError, match="does not exist"):
        labeled(tmp_path / "missing.csv")


# --- instruction_json -------------------------------------------------------------------------


def instructions(path: Path, **params: object) -> list[dict[str, object]]:
    return list(InstructionJsonSource(InstructionJsonSource.Params(path=str(path), **params)))


def test_instruction_json(tmp_path: Path) -> None:
    records = [{"instruction": "Add.", "input": "1 2", "output": "3"},
               {"instruction": "Greet.", "input": "", "output": "Hi", "model_response": "Hello"}]
    path = tmp_path / "data.json"
    path.write_text(json.dumps(records), encoding="utf-8")
    assert instructions(path) == records
    jsonl = tmp_path / "data.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in records) + "\n", encoding="utf-8")
    assert instructions(jsonl) == records


@pytest.mark.data_files("instruction-data-with-response.json")
def test_instruction_json_with_the_shared_files(shared_data: Path) -> None:
    records = instructions(shared_data / "instruction-data-with-response.json")
    assert len(records) == 110 and all("model_response" in r for r in records)


def test_instruction_json_errors(tmp_path: Path) -> None:
    path = tmp_path / "data.json"
    path.write_text(json.dumps([{"instruction": "a", "input": "", "output": "b"},
                                {"instruction": "a", "output": "b"}]), encoding="utf-8")
    with pytest.raises(DataError, match=r"data\.json: record 1 lacks the key 'input'"):
        instructions(path)
    path.write_text(json.dumps([{"instruction": "a", "input": None, "output": "b"}]), encoding="utf-8")
    with pytest.raises(DataError, match=r"record 0: 'input' is a JSON NoneType, not a string"):
        instructions(path)
    path.write_text(json.dumps({"instruction": "a"}), encoding="utf-8")
    with pytest.raises(DataError, match="expected a JSON list"):
        instructions(path)
    path.write_text('[{"instruction": "a",\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"invalid JSON at line 2"):
        instructions(path)
    path.write_text(json.dumps(["just a string"]), encoding="utf-8")
    with pytest.raises(DataError, match="record 0 is a JSON str"):
        instructions(path)
    jsonl = tmp_path / "data.jsonl"
    jsonl.write_text('{"instruction": "a", "input": "", "output": "b"}\n{"input": ""}\n',
                     encoding="utf-8")
    with pytest.raises(DataError, match=r"data\.jsonl, line 2 lacks the key 'instruction'"):
        instructions(jsonl)
    with pytest.raises(DataError, match="needs a `path`"):
        list(InstructionJsonSource(InstructionJsonSource.Params()))
    with pytest.raises(DataError, match="does not exist"):
        instructions(tmp_path / "missing.json")
