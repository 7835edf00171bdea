"""`llmbricks serve` as a user runs it: a process on a free localhost port, stopped by Ctrl-C."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys

import openai
import pytest

from tests.conftest import free_port, run_cli
from tests.server.serving import tiny_model_dir, wait_until_up


@pytest.mark.slow
def test_serve_answers_an_openai_client_and_stops_on_ctrl_c(tmp_path):
    model = tiny_model_dir(tmp_path / "tiny")
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "llmbricks", "serve", str(model), "--port",
                               str(port), "--api-key", "k3y", "--log-level", "warning"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until_up(f"http://127.0.0.1:{port}")
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="k3y",
                               max_retries=0, timeout=60)
        answer = client.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "Hello there"}], max_tokens=5)
        assert answer.choices[0].finish_reason in ("stop", "length")
        assert 1 <= answer.usage.completion_tokens <= 5
    finally:
        server.send_signal(signal.SIGINT)
        _, stderr = server.communicate(timeout=60)
    assert server.returncode == 0, stderr
    assert "Traceback" not in stderr


def test_serve_refuses_bad_usage_in_one_line(tmp_path):
    missing = run_cli("serve", str(tmp_path / "nope"))
    assert missing.returncode == 2 and "is not a directory" in missing.stderr
    model = tmp_path / "m"
    model.mkdir()
    port = run_cli("serve", str(model), "--port", "70000")
    assert port.returncode == 2 and "not a port" in port.stderr
    batch = run_cli("serve", str(model), "--max-batch", "0")
    assert batch.returncode == 2 and "--max-batch" in batch.stderr
    empty = run_cli("serve", str(tmp_path), "--api-key", " ")
    assert empty.returncode == 2 and "the key is empty" in empty.stderr
    for result in (missing, port, batch, empty):
        assert "Traceback" not in result.stderr
        assert len([line for line in result.stderr.splitlines() if line.startswith("Error:")]) == 1


def test_a_taken_port_or_an_unknown_host_is_one_line_before_the_model_loads(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = run_cli("serve", str(tmp_path), "--port", str(port))
    assert busy.returncode == 1
    assert busy.stderr.strip() == (f"error: cannot listen on 127.0.0.1:{port}: Address already in "
                                   "use (another server there? pick another --port)")
    host = run_cli("serve", str(tmp_path), "--host", "nosuchhost.invalid", "--api-key", "k")
    assert host.returncode == 2 and "--host nosuchhost.invalid: not an address" in host.stderr
    assert len(host.stderr.strip().splitlines()) == 1


def test_serving_an_empty_directory_fails_at_run_time_in_one_line(tmp_path):
    result = run_cli("serve", str(tmp_path), "--port", str(free_port()))
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
