"""The battery's text-input cases (issue 16, point 4): bad bytes, binary files, empty or short data.

Each case writes one bad input beside the tiny config, runs the command a user would, and asserts
the policy (one line, exit code, the file and the offset or the counts named, no traceback) and
that the working folder is exactly as it was: no run, cache or tokenizer directory left behind.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT
from tests.e2e.bad_inputs import Result, assert_clean_failure, invoke, snapshot
from tests.e2e.train_fixtures import tiny_config

CHAR_EOT = {"name": "char", "chars": "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ.:#\n",
            "special_tokens": ["<|endoftext|>"]}


def write_yaml(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def instruct_config(work: Path, records: Path) -> Path:
    """An instruct run on ``records`` with a char tokenizer (no GPT-2 files needed)."""
    return write_yaml(work / "instruct.yaml", {
        "name": "ins", "model": {"tokenizer": CHAR_EOT, "vocab_size": "auto", "context_length": 64,
                                 "emb_dim": 16, "n_layers": 1, "n_heads": 2},
        "data": {"source": {"name": "instruction_json", "path": str(records)}},
        "train": {"trainer": {"name": "instruct", "response_tokens": 2}, "max_steps": 2,
                  "batch_size": 2, "loggers": ["jsonl"]}})


def classify_config(work: Path, rows: Path) -> Path:
    return write_yaml(work / "classify.yaml", {
        "name": "clf", "model": {"tokenizer": "char", "context_length": 16, "emb_dim": 16,
                                 "n_layers": 1, "n_heads": 2, "head": {"name": "classification"}},
        "data": {"source": {"name": "labeled_text", "path": str(rows)}},
        "train": {"trainer": "classify", "max_steps": 2, "batch_size": 2, "trainable": "all",
                  "loggers": ["jsonl"]}})


@dataclass
class Case:
    """One bad input: ``setup(work)`` writes it and returns the command's arguments."""

    setup: Callable[[Path], list[str]]
    code: int
    words: tuple[str, ...]
    kept: tuple[str, ...] = field(default=())  # names that must still be there, unchanged


def train_with(name: str, data: bytes, *sets: str) -> Callable[[Path], list[str]]:
    """``train tiny.yaml`` reading the corpus ``name`` (holding ``data``)."""
    def setup(work: Path) -> list[str]:
        (work / name).write_bytes(data)
        sets_args = [a for s in sets for a in ("--set", s)]
        return ["train", "tiny.yaml", "--set", f"data.source.path={name}", *sets_args, "--out", "run"]
    return setup


def train_sets(*sets: str) -> Callable[[Path], list[str]]:
    def setup(work: Path) -> list[str]:
        return ["train", "tiny.yaml", *[a for s in sets for a in ("--set", s)], "--out", "run"]
    return setup


def empty_dir_corpus(work: Path) -> list[str]:
    (work / "texts").mkdir()
    return ["data", "prepare", "tiny.yaml", "--set", "data.source.path=texts"]


def instruct_with(data: bytes | None) -> Callable[[Path], list[str]]:
    """``train`` an instruct config on records.json holding ``data`` (None: a directory)."""
    def setup(work: Path) -> list[str]:
        records = work / "records.json"
        if data is None:
            records.mkdir()
        else:
            records.write_bytes(data)
        return ["train", str(instruct_config(work, records).name), "--out", "run"]
    return setup


def classify_with(text: str) -> Callable[[Path], list[str]]:
    def setup(work: Path) -> list[str]:
        rows = work / "rows.csv"
        rows.write_text(text, encoding="utf-8")
        return ["train", str(classify_config(work, rows).name), "--out", "run"]
    return setup


def encode_file(data: bytes) -> Callable[[Path], list[str]]:
    def setup(work: Path) -> list[str]:
        (work / "input.txt").write_bytes(data)
        return ["tokenizer", "encode", "-t", "tok", "--file", "input.txt"]
    return setup


def tokenizer_train_into_foreign_dir(work: Path) -> list[str]:
    (work / "notes").mkdir()
    (work / "notes" / "todo.txt").write_text("my own notes\n", encoding="utf-8")
    return ["tokenizer", "train", "tiny.yaml", "--out", "notes"]


def tokenizer_train_overwrite_foreign_dir(work: Path) -> list[str]:
    return [*tokenizer_train_into_foreign_dir(work), "--overwrite"]


def tokenizer_train_latin1(work: Path) -> list[str]:
    (work / "latin.txt").write_bytes("sea and sun, garçon\n".encode("latin-1") * 20)
    return ["tokenizer", "train", "tiny.yaml", "--set", "data.source.path=latin.txt", "--out", "newtok"]


LATIN1 = "the king of the sea à la plage\n".encode("latin-1") * 40
RECORD = {"instruction": "say hi", "input": "", "output": "hi"}

CASES: dict[str, Case] = {
    "latin1-corpus": Case(train_with("latin.txt", LATIN1), 2,
                          ("latin.txt", "invalid UTF-8 at byte offset 20", "0xe0", "encoding")),
    "nul-filled-file": Case(train_with("zeros.bin", b"\x00" * 4096), 2,
                            ("zeros.bin", "NUL character at byte offset 0", "binary")),
    "binary-png": Case(train_with("image.png", b"\x89PNG\r\n\x1a\n" + bytes(range(256))), 2,
                       ("image.png", "byte offset 0", "0x89")),
    "truncated-multibyte-at-end": Case(train_with("cut.txt", b"the sea " * 100 + "€".encode()[:2]), 2,
                                       ("cut.txt", "byte offset 800", "0xe2 0x82",
                                        "unexpected end of data")),
    "empty-corpus": Case(train_with("empty.txt", b""), 2, ("empty.txt", "corpus is empty",
                                                          "0 characters")),
    "corpus-shorter-than-a-window": Case(
        train_with("short.txt", b"the sea an", "model.context_length=64"), 2,
        ("training split", "of 10 tokens", "has 9 tokens", "one window needs 65",
         "context_length 64")),
    "empty-validation-split": Case(train_sets("data.val_fraction=0.001"), 2,
                                   ("validation split", "has 5 tokens", "one window needs 17",
                                    "data.val_fraction")),
    "directory-without-files-as-corpus": Case(empty_dir_corpus, 2, ("texts", "holds no files")),
    "missing-corpus-file": Case(train_sets("data.source.path=nope.txt"), 2,
                                ("nope.txt", "does not exist")),
    "directory-as-instruction-file": Case(instruct_with(None), 2,
                                          ("records.json", "is a directory, not a file")),
    "empty-instruction-list": Case(instruct_with(b"[]"), 2,
                                   ("records.json", "0 instruction records")),
    "instruction-too-few-for-a-val-split": Case(instruct_with(json.dumps([RECORD] * 3).encode()), 2,
                                                ("3 instruction records", "validation split",
                                                 "train.trainer.split")),
    "instruction-lone-surrogate-escape": Case(
        instruct_with(b'[{"instruction": "hi \\udcff", "input": "", "output": "x"}]'), 2,
        ("records.json: record 0", "'instruction'", "lone surrogate U+DCFF at character 3")),
    "instruction-latin1-json": Case(instruct_with(json.dumps([{**RECORD, "output": "olé"}],
                                                             ensure_ascii=False).encode("latin-1")), 2,
                                    ("records.json", "byte offset 53", "0xe9")),
    "csv-with-no-rows": Case(classify_with("text,label\n\n"), 2, ("rows.csv", "no labeled rows")),
    "csv-too-few-rows-for-a-val-split": Case(
        classify_with("text,label\nthe sea,sea\nthe king,land\nbirds sang,sea\n"), 2,
        ("labeled rows are too few", "split", "is empty")),
    "encode-file-latin1": Case(encode_file("garçon".encode("latin-1")), 2,
                               ("input.txt (--file)", "byte offset 3", "0xe7")),
    "encode-file-is-a-directory": Case(lambda w: ["tokenizer", "encode", "-t", "tok", "--file", "."], 2,
                                       ("--file", "is a directory")),
    "tokenizer-train-latin1-corpus": Case(tokenizer_train_latin1, 2,
                                          ("latin.txt", "byte offset 16", "0xe7")),
    "tokenizer-train-into-foreign-dir": Case(tokenizer_train_into_foreign_dir, 1,
                                             ("notes", "not empty"), kept=("notes",)),
    "tokenizer-train-overwrite-foreign-dir": Case(tokenizer_train_overwrite_foreign_dir, 1,
                                                  ("notes", "not a tokenizer directory",
                                                   "even with --overwrite"), kept=("notes",)),
}


@pytest.fixture(scope="module")
def char_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A char tokenizer trained on the tiny corpus, for `tokenizer encode -t DIR`."""
    base = tmp_path_factory.mktemp("tok")
    config = tiny_config(base)
    result = invoke("tokenizer", "train", str(config), "--out", str(base / "tok"),
                    env={"LLMBRICKS_CACHE_DIR": str(base / "cache")})
    assert result.code == 0, result.stderr
    return base / "tok"


@pytest.fixture
def work(tmp_path: Path, char_tokenizer: Path) -> Path:
    """The folder a case runs in: the tiny config, its corpus, and a saved tokenizer ``tok``."""
    folder = tmp_path / "work"
    folder.mkdir()
    tiny_config(folder)
    (folder / "tok").symlink_to(char_tokenizer, target_is_directory=True)
    return folder


def env_for(tmp_path: Path) -> dict[str, str]:
    return {"LLMBRICKS_CACHE_DIR": str(tmp_path / "cache"), "LLMBRICKS_OFFLINE": "1"}


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_bad_text_input(case: Case, work: Path, tmp_path: Path) -> None:
    args = case.setup(work)
    before = snapshot(work)
    result = invoke(*args, env=env_for(tmp_path), cwd=work)
    assert_clean_failure(result, case.code, *case.words)
    assert snapshot(work) == before  # nothing written, nothing half-written, nothing removed
    for name in case.kept:
        assert (work / name).exists()


def run_bytes(args: list[str | bytes], work: Path, tmp_path: Path, stdin: bytes = b"") -> Result:
    """``llmbricks ARGS`` in a fresh interpreter, with raw bytes on argv and stdin, as a shell gives."""
    env = {**os.environ, **env_for(tmp_path), "PYTHONPATH": str(ROOT / "src"), "LC_ALL": "C.UTF-8"}
    done = subprocess.run([sys.executable, "-m", "llmbricks", *args], input=stdin,
                          capture_output=True, cwd=work, env=env, timeout=120)
    return Result(done.returncode, done.stdout.decode(), done.stderr.decode())


def test_invalid_bytes_on_argv(work: Path, tmp_path: Path) -> None:
    before = snapshot(work)
    result = run_bytes(["tokenizer", "encode", "-t", "tok", b"the \xff\xfe sea"], work, tmp_path)
    assert_clean_failure(result, 2, "TEXT: invalid UTF-8 at byte offset 4", "0xff 0xfe")
    assert snapshot(work) == before


@pytest.mark.parametrize(("command", "stdin", "offset"), [
    ("inspect", "née ".encode() + b"\xc3(sea", 5),
    ("decode", b"1 2 \xff 3", 4),
], ids=["inspect-text", "decode-ids"])
def test_invalid_bytes_on_stdin(command: str, stdin: bytes, offset: int, work: Path,
                                tmp_path: Path) -> None:
    before = snapshot(work)
    result = run_bytes(["tokenizer", command, "-t", "tok"], work, tmp_path, stdin)
    assert_clean_failure(result, 2, f"standard input: invalid UTF-8 at byte offset {offset}",
                         f"(0x{stdin[offset]:02x}")
    assert snapshot(work) == before


def test_valid_text_still_encodes_and_a_bom_is_dropped(work: Path, tmp_path: Path) -> None:
    plain = run_bytes(["tokenizer", "encode", "-t", "tok", "the sea"], work, tmp_path)
    piped = run_bytes(["tokenizer", "encode", "-t", "tok"], work, tmp_path, b"\xef\xbb\xbfthe sea")
    assert plain.code == piped.code == 0, plain.stderr + piped.stderr
    assert plain.stdout == piped.stdout


def test_errors_replace_is_the_explicit_policy_for_bad_bytes(work: Path, tmp_path: Path) -> None:
    """The documented way through: `errors: replace` decodes each bad byte as U+FFFD."""
    (work / "latin.txt").write_bytes(LATIN1)
    result = invoke("data", "prepare", "tiny.yaml", "--set", "data.source.path=latin.txt",
                    "--set", "data.source.errors=replace", "--json", env=env_for(tmp_path), cwd=work)
    assert result.code == 0, result.stderr
    assert json.loads(result.stdout)["characters"] == len(LATIN1)  # one U+FFFD per bad byte
