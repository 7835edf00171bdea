"""Named data files: each resolution path, and verified, atomic downloads from a local server.

Every URL here points at a ``http.server`` on 127.0.0.1: no test reaches the internet.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from llmbricks.core.errors import DataError
from llmbricks.core.store import datafiles
from llmbricks.core.store.datafiles import RemoteFile, fetch, resolve_file, sha256_file

CONTENT = b"First Citizen:\nBefore we proceed any further, hear me speak.\n" * 50
SHA = hashlib.sha256(CONTENT).hexdigest()
WRONG = b"not the corpus you are looking for\n"
WRONG_SHA = hashlib.sha256(WRONG).hexdigest()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Serves the tmp dir; ``/truncated/NAME`` promises more bytes than it sends, then hangs up."""

    requests: list[str] = []

    def log_message(self, format: str, *args: object) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        type(self).requests.append(self.path)
        if self.path.startswith("/truncated/"):
            body = (Path(self.directory) / self.path.removeprefix("/truncated/")).read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body) * 2))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        super().do_GET()


@dataclass
class Server:
    root: Path
    url: str
    requests: list[str]

    def serve(self, name: str, data: bytes) -> str:
        (self.root / name).write_bytes(data)
        return f"{self.url}/{name}"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    root = tmp_path / "www"
    root.mkdir()
    handler = type("Handler", (_QuietHandler,), {"requests": []})
    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(handler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01},
                              daemon=True)
    thread.start()
    try:
        yield Server(root, f"http://127.0.0.1:{httpd.server_address[1]}", handler.requests)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No data dir, an empty tmp cache, downloads on, and no proxy between us and 127.0.0.1."""
    monkeypatch.delenv(datafiles.DATA_DIR_ENV, raising=False)
    monkeypatch.delenv(datafiles.OFFLINE_ENV, raising=False)
    cache = tmp_path / "cache"
    monkeypatch.setenv(datafiles.CACHE_DIR_ENV, str(cache))
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.setenv("NO_PROXY", "*")
    return cache


def remote(url: str = "http://127.0.0.1:9/corpus.txt", sha: str = SHA, **kw: object) -> RemoteFile:
    return RemoteFile(filename="corpus.txt", url=url, sha256=sha, size=len(CONTENT), **kw)


def listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


# --- resolution without network ---------------------------------------------------------------


def test_explicit_path_wins_and_is_not_held_to_the_checksum(tmp_path: Path) -> None:
    mine = tmp_path / "my-corpus.txt"
    mine.write_bytes(WRONG)
    assert resolve_file(remote(), explicit=mine) == mine
    assert resolve_file(remote(), explicit=str(mine)) == mine


def test_explicit_path_that_does_not_exist(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"corpus\.txt: the given path .*nope\.txt does not exist"):
        resolve_file(remote(), explicit=tmp_path / "nope.txt")
    with pytest.raises(DataError, match="is not a file"):
        resolve_file(remote(), explicit=tmp_path)


def test_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "corpus.txt").write_bytes(CONTENT)
    monkeypatch.setenv(datafiles.DATA_DIR_ENV, str(data))
    assert resolve_file(remote()) == data / "corpus.txt"


def test_wrong_file_in_data_dir_is_a_checksum_error_naming_both_hashes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "corpus.txt").write_bytes(WRONG)
    monkeypatch.setenv(datafiles.DATA_DIR_ENV, str(data))
    with pytest.raises(DataError) as err:
        resolve_file(remote())
    message = str(err.value)
    assert SHA in message and WRONG_SHA in message
    assert str(data / "corpus.txt") in message


def test_user_cache(isolated_env: Path) -> None:
    isolated_env.mkdir()
    (isolated_env / "corpus.txt").write_bytes(CONTENT)
    assert resolve_file(remote()) == isolated_env / "corpus.txt"


def test_data_dir_comes_before_the_cache(tmp_path: Path, isolated_env: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "corpus.txt").write_bytes(CONTENT)
    isolated_env.mkdir()
    (isolated_env / "corpus.txt").write_bytes(CONTENT)
    monkeypatch.setenv(datafiles.DATA_DIR_ENV, str(data))
    assert resolve_file(remote()) == data / "corpus.txt"
    assert datafiles.candidates(remote()) == [data / "corpus.txt", isolated_env / "corpus.txt"]


def test_cache_dir_defaults_to_home(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(datafiles.CACHE_DIR_ENV)
    assert datafiles.cache_dir() == Path.home() / ".cache" / "llmbricks"


# --- offline ----------------------------------------------------------------------------------


def test_offline_error_names_where_to_put_the_file(tmp_path: Path, isolated_env: Path,
                                                   server: Server,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data"
    monkeypatch.setenv(datafiles.DATA_DIR_ENV, str(data))
    monkeypatch.setenv(datafiles.OFFLINE_ENV, "1")
    url = server.serve("corpus.txt", CONTENT)
    with pytest.raises(DataError) as err:
        resolve_file(remote(url))
    message = str(err.value)
    assert "corpus.txt not found" in message
    assert str(data) in message and str(isolated_env) in message
    assert "LLMBRICKS_OFFLINE" in message
    assert server.requests == []
    assert listing(isolated_env) == []


def test_download_false_says_so(server: Server) -> None:
    url = server.serve("corpus.txt", CONTENT)
    with pytest.raises(DataError, match=r"downloads are off \(download: false\)"):
        resolve_file(remote(url), download=False)
    assert server.requests == []


@pytest.mark.parametrize(("value", "expected"), [
    ("", False), ("0", False), ("false", False), ("no", False), ("off", False),
    ("1", True), ("true", True), ("yes", True),
])
def test_offline_values(value: str, expected: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(datafiles.OFFLINE_ENV, value)
    assert datafiles.offline() is expected


# --- downloads --------------------------------------------------------------------------------


def test_download_lands_in_the_cache_verified(isolated_env: Path, server: Server) -> None:
    url = server.serve("corpus.txt", CONTENT)
    path = resolve_file(remote(url))
    assert path == isolated_env / "corpus.txt"
    assert sha256_file(path) == SHA
    assert path.read_bytes() == CONTENT
    assert listing(isolated_env) == ["corpus.txt"]  # no temp file left beside it
    # The next resolution finds the cached copy and does not download again.
    assert resolve_file(remote(url)) == path
    assert server.requests == ["/corpus.txt"]


def test_checksum_mismatch_names_both_hashes_and_leaves_no_file(isolated_env: Path,
                                                                server: Server) -> None:
    url = server.serve("corpus.txt", WRONG)
    with pytest.raises(DataError) as err:
        resolve_file(remote(url))
    message = str(err.value)
    assert SHA in message and WRONG_SHA in message
    assert url in message
    assert listing(isolated_env) == []


def test_interrupted_transfer_is_an_error_and_leaves_no_partial_file(isolated_env: Path,
                                                                    server: Server) -> None:
    server.serve("corpus.txt", CONTENT)
    url = f"{server.url}/truncated/corpus.txt"
    with pytest.raises(DataError, match="interrupted|failed") as err:
        resolve_file(remote(url))
    assert url in str(err.value)
    assert listing(isolated_env) == []


def test_http_error_leaves_no_file(isolated_env: Path, server: Server) -> None:
    url = f"{server.url}/missing.txt"
    with pytest.raises(DataError, match=r"download of .*missing\.txt failed: HTTP 404"):
        resolve_file(remote(url))
    assert listing(isolated_env) == []


def test_unreachable_server_says_where_to_put_the_file(isolated_env: Path, server: Server,
                                                       tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    port = server.url.rsplit(":", 1)[1]
    url = server.url.replace(port, "1")  # nothing listens on port 1 of 127.0.0.1
    monkeypatch.setenv(datafiles.DATA_DIR_ENV, str(tmp_path / "data"))
    with pytest.raises(DataError) as err:
        resolve_file(remote(url + "/corpus.txt"))
    message = str(err.value)
    assert "download failed" in message and str(tmp_path / "data") in message
    assert listing(isolated_env) == []


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def test_zip_member_download(isolated_env: Path, server: Server) -> None:
    url = server.serve("archive.zip", _zip({"readme.txt": b"hello", "corpus.txt": CONTENT}))
    path = resolve_file(remote(url, member="corpus.txt"))
    assert path == isolated_env / "corpus.txt"
    assert path.read_bytes() == CONTENT
    assert listing(isolated_env) == ["corpus.txt"]


def test_zip_without_the_member(isolated_env: Path, server: Server) -> None:
    url = server.serve("archive.zip", _zip({"readme.txt": b"hello"}))
    with pytest.raises(DataError, match="cannot extract corpus.txt"):
        resolve_file(remote(url, member="corpus.txt"))
    assert listing(isolated_env) == []


def test_zip_member_with_the_wrong_checksum(isolated_env: Path, server: Server) -> None:
    url = server.serve("archive.zip", _zip({"corpus.txt": WRONG}))
    with pytest.raises(DataError) as err:
        resolve_file(remote(url, member="corpus.txt"))
    assert SHA in str(err.value) and WRONG_SHA in str(err.value)
    assert listing(isolated_env) == []


def test_fetch_replaces_an_existing_target_atomically(tmp_path: Path, server: Server) -> None:
    target = tmp_path / "out" / "corpus.txt"
    target.parent.mkdir()
    target.write_bytes(b"old")
    url = server.serve("corpus.txt", CONTENT)
    assert fetch(remote(url), target) == target
    assert target.read_bytes() == CONTENT
    # A failed fetch keeps the old file as it was.
    bad = server.serve("bad.txt", WRONG)
    with pytest.raises(DataError):
        fetch(remote(bad), target)
    assert target.read_bytes() == CONTENT
    assert listing(target.parent) == ["corpus.txt"]


def test_unwritable_cache_is_a_data_error(tmp_path: Path, server: Server,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"")
    monkeypatch.setenv(datafiles.CACHE_DIR_ENV, str(blocker / "cache"))
    url = server.serve("corpus.txt", CONTENT)
    with pytest.raises(DataError, match="cannot write to"):
        resolve_file(remote(url))
