"""`llmbricks chat` as a user runs it: piped from a script, and at a terminal (a pseudo-terminal).

The models are random tiny char models saved as model directories: their answers are noise, so
the piped answers are compared with the Python API's (``Conversation``) for the same messages,
settings and seed, which ``tests/core/test_chat.py`` checks against the template.
"""

from __future__ import annotations

import json
import os
import string
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from llmbricks.core.build import build_model, build_tokenizer
from llmbricks.core.config import load_config
from llmbricks.core.store.model_dir import save_model_dir
from llmbricks.core.store.runs import load_run
from llmbricks.core.tasks.chat import Conversation
from tests.e2e.bad_inputs import invoke

CHARS = "".join(c for c in string.printable if c not in "\t\r\x0b\x0c")
SAMPLING = ["-t", "1", "--seed", "4"]


def save_tiny(directory: Path, *, context: int, specials: list[str], positional: str) -> Path:
    config = load_config({"model": {"tokenizer": {"name": "char", "chars": CHARS,
                                                  "special_tokens": specials},
                                    "context_length": context, "emb_dim": 16, "n_layers": 1,
                                    "n_heads": 2, "positional": positional}})
    tokenizer = build_tokenizer(config)
    torch.manual_seed(0)
    return save_model_dir(directory, config, build_model(config, tokenizer=tokenizer), tokenizer)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """Alpaca (no data.prompt, no chat template), stopping at <|endoftext|>; 1,024 positions."""
    return save_tiny(tmp_path_factory.mktemp("chat") / "model", context=1024,
                     specials=["<|endoftext|>"], positional="absolute")


@pytest.fixture(scope="module")
def long_model_dir(tmp_path_factory) -> Path:
    """No stop token and a long context: an answer runs as long as max_new_tokens allows."""
    return save_tiny(tmp_path_factory.mktemp("chat-long") / "model", context=65536, specials=[],
                     positional="rope")


def env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def chat(*args: str, stdin: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "llmbricks", "chat", *args], input=stdin,
                          capture_output=True, text=True, env=env(), cwd=cwd, timeout=300)


def api_answers(model_dir: Path, *messages: str, **settings: object) -> list[str]:
    config, model, tokenizer = load_run(model_dir)
    conversation = Conversation(model, tokenizer, config, **settings)
    return [conversation.reply(message) for message in messages]


# --- (a) piped ---------------------------------------------------------------------------------


def test_piped_a_two_turn_conversation_in_the_template_then_reset(model_dir, tmp_path):
    stdin = "Hi there.\nName a fruit.\n/save two.json\n/reset\nHi there.\n/save one.json\n"
    done = chat(str(model_dir), "-n", "16", *SAMPLING, stdin=stdin, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    first, second = api_answers(model_dir, "Hi there.", "Name a fruit.", max_new_tokens=16,
                                temperature=1.0, seed=4)
    assert first and second and first != second
    # Only the answers, one after the other: no banner, no prompt, no acknowledgements. After
    # /reset the same first message gets the same first answer (the same prompt and seed).
    assert done.stdout == f"{first}\n{second}\n{first}\n"
    two = json.loads((tmp_path / "two.json").read_text(encoding="utf-8"))
    assert two["messages"] == [{"role": "user", "content": "Hi there."},
                               {"role": "assistant", "content": first},
                               {"role": "user", "content": "Name a fruit."},
                               {"role": "assistant", "content": second}]
    assert two["template"] == "alpaca" and two["settings"]["seed"] == 4
    one = json.loads((tmp_path / "one.json").read_text(encoding="utf-8"))
    assert one["messages"] == two["messages"][:2]


def test_piped_bad_lines_are_one_line_errors_and_the_chat_goes_on(model_dir, tmp_path):
    stdin = ("/set temperature hot\n/set top_p 1.5\n/set colour 1\n/frobnicate\n/save\n"
             f"{'z' * 1100}\nb\xe4d\n/set max_new_tokens 4\n/set top_k none\n/system Be brief.\n"
             "//slash\n/exit\nnever read\n")
    done = chat(str(model_dir), "-n", "8", stdin=stdin, cwd=tmp_path)
    errors = done.stderr.splitlines()
    assert errors == [
        "error: --temperature 'hot': temperature must be a finite number >= 0 (0 = greedy)",
        "error: --top-p 1.5: top-p must be in (0, 1]",
        "error: unknown setting 'colour' (the settings: max_new_tokens, temperature, top_k, "
        "top_p, seed)",
        "error: unknown command '/frobnicate': /help lists the commands (start a message with "
        "// to send a '/')",
        "error: /save needs a file: /save FILE",
        "error: the message does not fit: its prompt is 1240 tokens, and with max_new_tokens 8 "
        "it exceeds the 1024-token context; shorten it or lower max_new_tokens",
        "error: the message: character 'ä' at offset 1 is not in the 'char' tokenizer's vocabulary; retrain "
        "it on text that contains it",
    ]
    assert done.returncode == 2  # the first error's code, once the input is read
    # One answer: to //slash, sent as "/slash", with the system message, in 4 tokens at most.
    config, model, tokenizer = load_run(model_dir)
    conversation = Conversation(model, tokenizer, config, max_new_tokens=4, system="Be brief.")
    assert done.stdout == conversation.reply("/slash") + "\n"


def test_bad_flags_fail_before_the_model_loads(model_dir, tmp_path):
    for args, message in [
        (["-t", "-1"], "error: --temperature -1.0: temperature must be a finite number >= 0 "
                       "(0 = greedy)"),
        (["--top-k", "0"], "error: --top-k 0: top-k must be a whole number >= 1"),
        (["-n", "1024"], "error: --max-new-tokens 1024: max-new-tokens must be below the model's "
                         "1024-token context, which holds the prompt too"),
    ]:
        done = invoke("chat", str(model_dir), *args)
        assert (done.code, done.stderr.splitlines()) == (2, [message]), done.stderr
    done = invoke("chat", str(tmp_path / "missing"))
    assert done.code == 2 and "RUN '" in done.stderr and "is not a directory" in done.stderr


def test_help_lists_every_command(model_dir, tmp_path):
    done = chat(str(model_dir), stdin="/help\n", cwd=tmp_path)
    assert done.returncode == 0
    for command in ("/reset", "/system TEXT", "/set NAME VALUE", "/save FILE", "/help", "/exit"):
        assert command in done.stdout


# --- (b) at a terminal -------------------------------------------------------------------------


@pytest.mark.slow
def test_at_a_terminal_ctrl_c_stops_an_answer_and_ctrl_d_leaves(long_model_dir, tmp_path):
    pexpect = pytest.importorskip("pexpect")
    child = pexpect.spawn(sys.executable, ["-m", "llmbricks", "chat", str(long_model_dir), "-n",
                                           "12", *SAMPLING], cwd=str(tmp_path), env=env(),
                          encoding="utf-8", timeout=60, dimensions=(24, 200))
    try:
        child.expect(r"llmbricks chat: .* \(template 'alpaca', 65536-token context\)\. /help")
        child.expect_exact(">>> ")
        shown = []
        for message in ("Hi there.", "Name a fruit."):
            child.sendline(message)
            child.expect_exact(">>> ")
            shown.append(child.before.replace("\r\n", "\n"))
        # Ctrl-C at the prompt clears the line. (Once readline has echoed the text and gone back
        # to waiting: a Ctrl-C within microseconds of a keystroke, as no hand types, may wait
        # for the next key in readline's own signal handling.)
        child.send("never sent")
        child.expect_exact("never sent")
        time.sleep(0.3)
        child.sendintr()
        child.expect_exact(">>> ")
        # Ctrl-C during a long answer stops it; the program goes on.
        child.sendline("/set max_new_tokens 60000")
        child.expect_exact("[max_new_tokens = 60000]")
        child.expect_exact(">>> ")
        child.sendline("Tell me a long story.")
        child.expect_exact("Tell me a long story.\r\n")
        child.expect(r"(?s).{20}")  # the answer is streaming
        child.sendintr()
        child.expect_exact("[answer stopped: what was said so far is kept as the answer]")
        child.expect_exact(">>> ")
        child.sendline("/set max_new_tokens 12")
        child.expect_exact(">>> ")
        child.sendline("Thanks.")
        child.expect_exact(">>> ")
        child.sendline("/save chat.json")
        child.expect_exact("[saved 8 messages to chat.json]")
        child.expect_exact(">>> ")
        child.sendeof()
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0, child.before
    messages = json.loads((tmp_path / "chat.json").read_text(encoding="utf-8"))["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant"] * 4
    assert [m["content"] for m in messages[::2]] == ["Hi there.", "Name a fruit.",
                                                     "Tell me a long story.", "Thanks."]
    # Each answer was streamed to the terminal as saved; the stopped one is kept, cut short.
    assert messages[1]["content"] and messages[1]["content"] in shown[0]
    assert messages[3]["content"] and messages[3]["content"] in shown[1]
    assert 0 < len(messages[5]["content"]) < 60000
