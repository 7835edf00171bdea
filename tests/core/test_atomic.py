"""The one atomic writer: umask modes, nothing half-written, no temporary file left behind."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from llmbricks.core.build import build_model
from llmbricks.core.config import load_config
from llmbricks.core.errors import CheckpointError
from llmbricks.core.registry import get_registry
from llmbricks.core.store.atomic import (
    atomic_directory,
    atomic_file,
    atomic_path,
    fresh_temp_dir,
    is_temp_name,
    remove_leftovers,
    temp_name,
    write_atomic,
)
from llmbricks.core.store.model_dir import save_model_dir
from llmbricks.core.store.runs import Run
from llmbricks.core.store.token_cache import build_token_cache

TEXT = "the king and queen of a far land rode out at dawn to see the sea while birds sang " * 30
MODES = [(0o022, 0o644, 0o755), (0o027, 0o640, 0o750)]


@pytest.fixture
def umask():
    """Set the process umask for one test, then put the old one back."""
    old = os.umask(0o022)

    def set_mask(mask: int) -> None:
        os.umask(mask)

    try:
        yield set_mask
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def temps(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".tmp") or is_temp_name(p.name)]


# --- modes follow the umask -------------------------------------------------------------------


@pytest.mark.parametrize(("mask", "file_mode", "dir_mode"), MODES)
def test_write_atomic_gives_the_umask_mode(tmp_path, umask, mask, file_mode, dir_mode):
    umask(mask)
    text = write_atomic(tmp_path / "a.txt", "hello\n")
    data = write_atomic(tmp_path / "b.bin", b"\x00\x01")
    assert text == tmp_path / "a.txt" and text.read_text(encoding="utf-8") == "hello\n"
    assert data.read_bytes() == b"\x00\x01"
    assert mode(text) == mode(data) == file_mode
    assert names(tmp_path) == ["a.txt", "b.bin"]


@pytest.mark.parametrize(("mask", "file_mode", "dir_mode"), MODES)
def test_atomic_file_gives_the_umask_mode(tmp_path, umask, mask, file_mode, dir_mode):
    umask(mask)
    with atomic_file(tmp_path / "state.pt") as handle:
        torch.save({"x": torch.arange(3)}, handle)
    with atomic_file(tmp_path / "notes.txt", "w") as handle:
        handle.write("é\n")
    assert torch.load(tmp_path / "state.pt", weights_only=True)["x"].tolist() == [0, 1, 2]
    assert (tmp_path / "notes.txt").read_text(encoding="utf-8") == "é\n"
    assert mode(tmp_path / "state.pt") == mode(tmp_path / "notes.txt") == file_mode
    assert names(tmp_path) == ["notes.txt", "state.pt"]


@pytest.mark.parametrize(("mask", "file_mode", "dir_mode"), MODES)
def test_atomic_path_gives_the_umask_mode_even_after_a_0600_library(tmp_path, umask, mask,
                                                                    file_mode, dir_mode):
    umask(mask)
    with atomic_path(tmp_path / "w.safetensors") as path:
        assert path.parent == tmp_path and is_temp_name(path.name)
        save_file({"w": torch.ones(2)}, str(path))  # safetensors renames in its own 0600 file
    assert load_file(str(tmp_path / "w.safetensors"))["w"].tolist() == [1.0, 1.0]
    assert mode(tmp_path / "w.safetensors") == file_mode
    assert names(tmp_path) == ["w.safetensors"]


@pytest.mark.parametrize(("mask", "file_mode", "dir_mode"), MODES)
def test_atomic_directory_gives_the_umask_mode(tmp_path, umask, mask, file_mode, dir_mode):
    umask(mask)
    with atomic_directory(tmp_path / "out") as tmp:
        assert tmp.parent == tmp_path and is_temp_name(tmp.name)
        write_atomic(tmp / "config.yaml", "a: 1\n")
        (tmp / "sub").mkdir()
        write_atomic(tmp / "sub" / "x.bin", b"x")
    out = tmp_path / "out"
    assert mode(out) == mode(out / "sub") == dir_mode
    assert mode(out / "config.yaml") == mode(out / "sub" / "x.bin") == file_mode
    assert names(tmp_path) == ["out"]
    assert mode(fresh_temp_dir(tmp_path, "other")) == dir_mode


# --- a failure leaves the old content and no temporary file -------------------------------------


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_a_failed_atomic_file_keeps_the_old_content(tmp_path, error):
    target = write_atomic(tmp_path / "results.json", "old\n")
    with pytest.raises(error), atomic_file(target, "w") as handle:
        handle.write("new, but only half")
        handle.flush()
        raise error("stopped mid-write")
    assert target.read_text(encoding="utf-8") == "old\n"
    assert names(tmp_path) == ["results.json"]


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_a_failed_atomic_path_keeps_the_old_content(tmp_path, error):
    target = write_atomic(tmp_path / "model.safetensors", b"old")
    with pytest.raises(error), atomic_path(target) as path:
        path.write_bytes(b"half")
        raise error("stopped mid-write")
    assert target.read_bytes() == b"old"
    assert names(tmp_path) == ["model.safetensors"]


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_a_failed_atomic_directory_keeps_the_old_directory(tmp_path, error):
    with atomic_directory(tmp_path / "model") as tmp:
        write_atomic(tmp / "config.yaml", "old\n")
    with pytest.raises(error), atomic_directory(tmp_path / "model", overwrite=True) as tmp:
        write_atomic(tmp / "config.yaml", "new\n")
        raise error("stopped mid-write")
    assert (tmp_path / "model" / "config.yaml").read_text(encoding="utf-8") == "old\n"
    assert names(tmp_path) == ["model"] and temps(tmp_path) == []


def test_atomic_directory_refuses_a_non_empty_target_unless_overwrite(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(CheckpointError, match="not empty"), atomic_directory(tmp_path / "out"):
        pass
    with atomic_directory(tmp_path / "out", overwrite=True) as tmp:
        write_atomic(tmp / "new.txt", "new")
    assert names(tmp_path / "out") == ["new.txt"]
    assert names(tmp_path) == ["out"]


def test_atomic_file_takes_only_whole_file_modes(tmp_path):
    with pytest.raises(ValueError, match="mode"), atomic_file(tmp_path / "log", "a"):
        pass
    assert names(tmp_path) == []


# --- one naming scheme, and leftovers ----------------------------------------------------------


def test_one_temporary_name_scheme_and_leftovers_are_removed(tmp_path):
    name = temp_name("step-12")
    assert name.startswith(".step-12.") and name.endswith(".tmp") and is_temp_name(name)
    assert Path(tmp_path, name).match(".step-*.tmp")  # what resuming a run globs for
    assert not is_temp_name("step-12") and not is_temp_name(".hidden") and not is_temp_name("a.tmp")
    assert len(temp_name("x" * 300)) < 255
    (tmp_path / name).mkdir()
    (tmp_path / name / "model.safetensors").write_bytes(b"half")
    (tmp_path / temp_name("tokens.bin")).write_bytes(b"half")
    (tmp_path / "step-11").mkdir()
    assert len(remove_leftovers(tmp_path)) == 2
    assert names(tmp_path) == ["step-11"]


# --- end to end: what llmbricks saves is readable by the group, and leaves no temporary -----------


def everything(root: Path) -> list[Path]:
    return [root, *root.rglob("*")]


def test_saved_tokenizer_model_dir_checkpoint_and_cache_are_group_readable(tmp_path, umask):
    umask(0o022)
    tokenizer = get_registry().build("tokenizer", {"name": "bpe", "vocab_size": 300})
    tokenizer.train([TEXT])
    tokenizer.save(tmp_path / "tok")
    corpus = tmp_path / "corpus" / "text.txt"
    corpus.parent.mkdir()
    corpus.write_text(TEXT, encoding="utf-8")
    source = get_registry().build("datasource", {"name": "text", "path": str(corpus)})
    cache = build_token_cache(source, tokenizer, tmp_path / "cache")
    config = load_config({"model": {"tokenizer": {"name": "bpe", "vocab_size": 300},
                                    "vocab_size": tokenizer.vocab_size, "context_length": 16,
                                    "emb_dim": 32, "n_layers": 1, "n_heads": 2, "dropout": 0.0},
                          "train": {"loggers": []}})
    torch.manual_seed(0)
    model = build_model(config, tokenizer=tokenizer)
    save_model_dir(tmp_path / "model", config, model, tokenizer)
    run = Run.create(tmp_path / "run", config, tokenizer, vocab_size=tokenizer.vocab_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    run.save_checkpoint(1, model, optimizer, {}, keep=2)
    run.save_checkpoint(1, model, optimizer, {}, keep=2)  # a checkpoint saved again replaces it

    assert (tmp_path / "tok" / "tokenizer.json").is_file()
    assert (tmp_path / "model" / "model.safetensors").is_file()
    assert (tmp_path / "run" / "checkpoints" / "step-1" / "optimizer.pt").is_file()
    assert run.latest_checkpoint() is not None
    assert len(cache.tokens) > 0
    for root in (tmp_path / "tok", tmp_path / "model", tmp_path / "run", tmp_path / "cache"):
        for path in everything(root):
            want = 0o755 if path.is_dir() else 0o644
            assert mode(path) == want, f"{path.relative_to(tmp_path)} is {oct(mode(path))}"
    assert temps(tmp_path) == []


# --- disk failures are one line naming the path and the cause ------------------------------------


@pytest.mark.parametrize(("error", "cause"), [
    (OSError(28, "No space left on device"), "no space left on the device"),
    (OSError(30, "Read-only file system"), "the file system is read-only"),
    (OSError(13, "Permission denied"), "permission denied"),
    (RuntimeError("Error while serializing: I/O error: No space left on device (os error 28)"),
     "no space left on the device"),
])
def test_write_error_names_the_path_and_the_cause(tmp_path, error, cause):
    from llmbricks.core.store.atomic import write_error

    message = str(write_error(tmp_path / "step-8", error))
    assert message.startswith(f"cannot write {tmp_path / 'step-8'}: {cause}")
    assert "\n" not in message and "Error" not in message


@pytest.mark.parametrize("writer", ["file", "path", "directory"])
def test_a_full_disk_mid_write_is_one_line_and_leaves_the_old_content(tmp_path, writer):
    target = tmp_path / "out"
    if writer == "directory":
        with atomic_directory(target) as tmp:
            (tmp / "old.txt").write_text("old")
    else:
        write_atomic(target, "old")
    before = {p.name for p in tmp_path.iterdir()}
    full = OSError(28, "No space left on device")
    with pytest.raises(CheckpointError, match=r"cannot write .*out: no space left on the device"):
        if writer == "file":
            with atomic_file(target, "w") as handle:
                handle.write("half")
                raise full
        elif writer == "path":
            with atomic_path(target) as path:
                path.write_text("half")
                raise full
        else:
            with atomic_directory(target, overwrite=True) as tmp:
                (tmp / "new.txt").write_text("half")
                raise full
    assert {p.name for p in tmp_path.iterdir()} == before and temps(tmp_path) == []
    assert (target / "old.txt" if writer == "directory" else target).read_text() == "old"


def test_torch_enforce_fail_without_an_errno_is_read_as_the_cause(tmp_path, monkeypatch):
    from llmbricks.core.store import atomic

    monkeypatch.setattr(atomic, "_nearly_full", lambda path: True)
    error = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")
    assert "no space left" in str(atomic.write_error(tmp_path / "x", error))
    monkeypatch.setattr(atomic, "_nearly_full", lambda path: False)
    assert "the write failed ([enforce fail" in str(atomic.write_error(tmp_path / "x", error))


def test_an_unrelated_error_inside_a_writer_passes_unchanged(tmp_path):
    with pytest.raises(RuntimeError, match="a bug"), atomic_file(tmp_path / "x"):
        raise RuntimeError("a bug")
    assert names(tmp_path) == []


# --- output directories ---------------------------------------------------------------------------


def test_check_output_dir_names_a_file_in_the_way(tmp_path):
    from llmbricks.core.store.atomic import check_output_dir

    (tmp_path / "file").write_text("x")
    with pytest.raises(CheckpointError, match=r"file is a file, not a directory"):
        check_output_dir(tmp_path / "file" / "a" / "b")
    with pytest.raises(CheckpointError, match="exists and is not a directory"):
        check_output_dir(tmp_path / "file", overwrite=True)


def test_overwrite_replaces_only_the_commands_own_kind_of_output(tmp_path):
    from llmbricks.core.store.atomic import OutputKind, check_output_dir

    kind = OutputKind("model directory", ("config.yaml", "model.safetensors"))
    mine, theirs = tmp_path / "mine", tmp_path / "theirs"
    for folder in (mine, theirs):
        folder.mkdir()
        (folder / "config.yaml").write_text("x")
    (mine / "model.safetensors").write_bytes(b"x")
    assert check_output_dir(mine, overwrite=True, kind=kind) == mine
    with pytest.raises(CheckpointError, match=r"is not a model directory \(no config.yaml, "
                                              r"model.safetensors\).*even with --overwrite"):
        check_output_dir(theirs, overwrite=True, kind=kind)
    with pytest.raises(CheckpointError, match="even with --overwrite"), \
            atomic_directory(theirs, overwrite=True, kind=kind):
        pass
    assert names(theirs) == ["config.yaml"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through a chmod")
def test_check_output_dir_refuses_a_directory_it_cannot_write(tmp_path):
    from llmbricks.core.store.atomic import check_output_dir

    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    try:
        with pytest.raises(CheckpointError, match="permission denied"):
            check_output_dir(locked / "out")
    finally:
        locked.chmod(0o755)


# --- symlinks and the kill hook -------------------------------------------------------------------


def test_check_links_allows_links_inside_and_refuses_links_outside(tmp_path):
    from llmbricks.core.store.atomic import check_links

    root = tmp_path / "run"
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_text("a")
    (root / "sub" / "inside").symlink_to(root / "a.txt")
    assert check_links(root) == root
    (tmp_path / "secret").write_text("s")
    (root / "sub" / "out").symlink_to(tmp_path / "secret")
    with pytest.raises(CheckpointError, match=r"out is a symlink to .*secret, outside"):
        check_links(root)


def test_kill_point_does_nothing_unless_asked(monkeypatch):
    from llmbricks.core.store import atomic

    monkeypatch.delenv(atomic.KILL_AT_ENV, raising=False)
    atomic.kill_point("checkpoint:renamed")
    monkeypatch.setenv(atomic.KILL_AT_ENV, "checkpoint:renamed@1000000")
    atomic.kill_point("checkpoint:renamed")  # not yet the millionth time
    atomic.kill_point("setup:started")        # another point
