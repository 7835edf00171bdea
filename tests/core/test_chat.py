"""The Python API of chat: a conversation in the model's template, trimmed to its context."""

from __future__ import annotations

import json
import string

import pytest
import torch

from llmbricks.core.build import build_model, build_tokenizer
from llmbricks.core.config import load_config
from llmbricks.core.errors import CheckpointError, InputError
from llmbricks.core.registry import get_registry
from llmbricks.core.tasks.chat import Conversation, Turn, parse_setting, trim_note
from llmbricks.core.tasks.generation import GenerationError
from llmbricks.core.tasks.instruction import prompt_template

#: Printable ASCII and a newline: every character the templates and the messages below use.
CHARS = "".join(c for c in string.printable if c not in "\t\r\x0b\x0c")
CHATML = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + "
          "'<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}"
          "{{ '<|im_start|>assistant\n' }}{% endif %}")
#: A template with no system role, as Gemma's refuses one.
NO_SYSTEM = ("{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not "
             "supported') }}{% endif %}" + CHATML)


def tiny(prompt=None, context: int = 512, specials=("<|endoftext|>",)):
    """A random 1-layer char model (its answers are noise: only their shape is tested)."""
    config = load_config({"model": {"tokenizer": {"name": "char", "chars": CHARS,
                                                  "special_tokens": list(specials)},
                                    "context_length": context, "emb_dim": 16, "n_layers": 1,
                                    "n_heads": 2},
                          "data": {"prompt": prompt}})
    tokenizer = build_tokenizer(config)
    torch.manual_seed(0)
    return config, build_model(config, tokenizer=tokenizer), tokenizer


@pytest.fixture(scope="module")
def alpaca():
    return tiny()


@pytest.fixture(scope="module")
def chatml():
    return tiny({"name": "chat_template", "template": CHATML},
                specials=("<|im_start|>", "<|im_end|>"))


def answered(conversation: Conversation, *turns: tuple[str, str]) -> Conversation:
    conversation.turns = [Turn(user, assistant) for user, assistant in turns]
    return conversation


# --- rendering -------------------------------------------------------------------------------


def test_alpaca_concatenates_each_turns_prompt_and_response_then_the_new_prompt(alpaca):
    config, model, tokenizer = alpaca
    conversation = answered(Conversation(model, tokenizer, config, max_new_tokens=20),
                            ("Hi.", "Hello!"))
    template = prompt_template(config)
    first = {"instruction": "Hi.", "input": "", "output": "Hello!"}
    expected = (template.prompt(first) + template.response(first)
                + template.prompt({"instruction": "And you?", "input": "", "output": ""}))
    assert conversation.render("And you?") == expected
    assert expected.count("### Response:\n") == 2 and "### Response:\nHello!Below is" in expected
    ids, dropped = conversation.prompt_ids("And you?")
    assert ids == tokenizer.encode(expected) and dropped == 0
    assert conversation.stop == "<|endoftext|>"


def test_a_message_that_looks_like_a_special_token_stays_text(alpaca):
    config, model, tokenizer = alpaca
    conversation = Conversation(model, tokenizer, config)
    ids, _ = conversation.prompt_ids("end<|endoftext|>")
    assert tokenizer.special_tokens["<|endoftext|>"] not in ids
    assert tokenizer.decode(ids) == conversation.render("end<|endoftext|>")


def test_a_chat_template_renders_the_whole_conversation_with_its_specials_as_ids(chatml):
    config, model, tokenizer = chatml
    conversation = answered(Conversation(model, tokenizer, config), ("Hi.", "Hello!"))
    text = conversation.render("Say <|im_end|> twice.")
    assert text == ("<|im_start|>user\nHi.<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n"
                    "<|im_start|>user\nSay <|im_end|> twice.<|im_end|>\n<|im_start|>assistant\n")
    ids, _ = conversation.prompt_ids("Say <|im_end|> twice.")
    specials = tokenizer.special_tokens
    # The template's four turn starts and three turn ends are ids; the message's is text.
    assert ids.count(specials["<|im_start|>"]) == 4 and ids.count(specials["<|im_end|>"]) == 3
    assert tokenizer.decode(ids) == text
    assert conversation.stop == "<|im_end|>"


def test_the_system_message_goes_where_the_template_can_show_it(alpaca, chatml):
    config, model, tokenizer = chatml
    conversation = Conversation(model, tokenizer, config, system="Be brief.")
    assert conversation.render("Hi.").startswith("<|im_start|>system\nBe brief.<|im_end|>\n"
                                                 "<|im_start|>user\nHi.<|im_end|>")
    assert conversation.messages == [{"role": "system", "content": "Be brief."}]
    # A template that refuses a system role gets the text at the top of the first user message.
    template = get_registry().build("prompt", {"name": "chat_template", "template": NO_SYSTEM})
    refusing = Conversation(model, tokenizer, template=template)
    how = refusing.set_system("Be brief.")
    assert "no system role" in how and "first user message" in how
    assert refusing.render("Hi.") == ("<|im_start|>user\nBe brief.\n\nHi.<|im_end|>\n"
                                      "<|im_start|>assistant\n")
    # A one-record template gets it before the conversation.
    config, model, tokenizer = alpaca
    alpaca_chat = Conversation(model, tokenizer, config)
    assert "before the conversation" in alpaca_chat.set_system("Be brief.")
    assert alpaca_chat.render("Hi.").startswith("Be brief.\n\nBelow is an instruction")
    assert alpaca_chat.set_system("  ") == "no system message" and alpaca_chat.system is None


def test_the_templates_own_system_param_is_the_default(chatml):
    _, model, tokenizer = chatml
    template = get_registry().build("prompt", {"name": "chat_template", "template": CHATML,
                                               "system": "You are terse."})
    conversation = Conversation(model, tokenizer, template=template)
    assert conversation.system == "You are terse."
    assert conversation.render("Hi.").startswith("<|im_start|>system\nYou are terse.")


# --- trimming --------------------------------------------------------------------------------


def test_the_oldest_turns_leave_the_prompt_when_it_outgrows_the_context(chatml):
    config, model, tokenizer = chatml
    conversation = Conversation(model, tokenizer, config, max_new_tokens=100)
    turn = ("x" * 60, "y" * 60)  # each answered turn is 141 tokens; the question 22
    answered(conversation, turn, turn, turn, turn)
    ids, dropped = conversation.prompt_ids("Hi.")
    assert dropped == 2 and len(ids) == 2 * 141 + 22
    notes: list[str] = []
    answer = conversation.reply("Hi.", on_trim=notes.append)
    assert notes == ["[history trimmed: dropped 2 oldest turns to fit the 512-token context]"]
    assert conversation.first_seen == 2 and conversation.turns[-1] == Turn("Hi.", answer)
    assert len(conversation.messages) == 10  # saved whole; only the prompt forgets
    assert trim_note(1, 64) == "[history trimmed: dropped 1 oldest turn to fit the 64-token context]"


def test_a_message_that_cannot_fit_alone_is_one_line_and_changes_nothing(chatml):
    config, model, tokenizer = chatml
    conversation = answered(Conversation(model, tokenizer, config, max_new_tokens=100),
                            ("Hi.", "Hello!"))
    with pytest.raises(InputError) as raised:
        conversation.reply("z" * 500)
    message = str(raised.value)
    assert "\n" not in message
    assert message == ("the message does not fit: its prompt is 519 tokens, and with "
                       "max_new_tokens 100 it exceeds the 512-token context; shorten it or lower "
                       "max_new_tokens")
    assert conversation.turns == [Turn("Hi.", "Hello!")] and conversation.first_seen == 0


def test_a_position_table_bounds_the_context(alpaca):
    config, model, tokenizer = tiny(context=300)
    conversation = Conversation(model, tokenizer, config)
    assert model.positions_limit() == conversation.context_length == 300
    assert conversation.settings.max_new_tokens == 150  # half the context: shorter than 256


# --- answers ---------------------------------------------------------------------------------


def test_reply_streams_the_answer_and_keeps_the_turn(alpaca):
    config, model, tokenizer = alpaca
    conversation = Conversation(model, tokenizer, config, max_new_tokens=12, temperature=1.0,
                                seed=3)
    pieces: list[str] = []
    answer = conversation.reply("Hi.", on_text=pieces.append)
    assert answer and "".join(pieces).strip() == answer
    assert conversation.messages == [{"role": "user", "content": "Hi."},
                                     {"role": "assistant", "content": answer}]
    second = conversation.reply("More.")
    assert len(conversation.turns) == 2
    conversation.reset()
    assert conversation.turns == [] and conversation.settings.seed == 3
    assert conversation.reply("Hi.") == answer  # the same seed, the same prompt: the same answer
    assert second != answer


def test_ctrl_c_during_an_answer_keeps_what_was_said(alpaca):
    config, model, tokenizer = alpaca
    conversation = Conversation(model, tokenizer, config, max_new_tokens=50, temperature=1.0,
                                seed=3)
    pieces: list[str] = []
    mode = model.training

    def interrupt(piece: str) -> None:
        pieces.append(piece)
        if len(pieces) == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        conversation.reply("Hi.", on_text=interrupt)
    assert conversation.turns == [Turn("Hi.", "".join(pieces).strip())]
    assert model.training is mode  # generation restored the model's mode


@pytest.mark.parametrize("text", ["", "   ", 3])
def test_an_empty_or_non_text_message_is_refused(alpaca, text):
    config, model, tokenizer = alpaca
    with pytest.raises(InputError):
        Conversation(model, tokenizer, config).reply(text)


def test_a_model_without_a_tokenizer_is_refused(alpaca):
    from llmbricks.core.errors import ConfigError

    config, model, _ = alpaca
    with pytest.raises(ConfigError, match="needs the model's tokenizer"):
        Conversation(model, None, config)


# --- settings --------------------------------------------------------------------------------


def test_settings_parse_text_and_none(alpaca):
    config, model, tokenizer = alpaca
    conversation = Conversation(model, tokenizer, config, top_k=5)
    assert conversation.set("temperature", "0.7") == 0.7
    assert conversation.set("top-k", "none") is None and conversation.settings.top_k is None
    assert conversation.set("--top_p", "0.9") == 0.9
    assert conversation.set("temp", 0) == 0  # a prefix of one setting names it
    assert conversation.set("seed", "12") == 12
    assert conversation.settings.as_options() == {"max_new_tokens": 256, "temperature": 0,
                                                  "top_k": None, "top_p": 0.9, "seed": 12}
    assert parse_setting("temperature", "none") == "none"  # refused below, not turned off


@pytest.mark.parametrize(("name", "value", "cli", "api"), [
    ("temperature", "-1", "--temperature -1.0: temperature must be a finite number >= 0",
     "temperature must be a finite number >= 0 (0 = greedy), got -1.0"),
    ("temperature", "hot", "--temperature 'hot': temperature must be",
     "temperature must be a finite number >= 0 (0 = greedy), got 'hot'"),
    ("top_p", "1.5", "--top-p 1.5: top-p must be in (0, 1]", "top_p must be in (0, 1], got 1.5"),
    ("top_k", "0", "--top-k 0: top-k must be a whole number >= 1",
     "top_k must be a whole number >= 1, got 0"),
    ("top_k", "2.5", "--top-k '2.5': top-k must be a whole number >= 1",
     "top_k must be a whole number >= 1, got '2.5'"),
    ("seed", "-3", "--seed -3: seed must be a whole number from 0 to",
     "seed must be a whole number from 0 to"),
    ("max_new_tokens", "none", "--max-new-tokens 'none': max-new-tokens must be a whole number",
     "max_new_tokens must be a whole number"),
    ("max_new_tokens", "512", "--max-new-tokens 512: max-new-tokens must be below the model's "
     "512-token context, which holds the prompt too",
     "max_new_tokens must be below the model's 512-token context, which holds the prompt too, "
     "got 512"),
    ("top", "1", "unknown setting 'top' - did you mean 'top_p'? (the settings: max_new_tokens, "
     "temperature, top_k, top_p, seed)", "unknown setting 'top'"),
    ("colour", "1", "unknown setting 'colour' (the settings:", "unknown setting 'colour'"),
])
def test_bad_settings_give_generations_one_line_messages(alpaca, name, value, cli, api):
    config, model, tokenizer = alpaca
    for flag_style, expected in ((True, cli), (False, api)):
        conversation = Conversation(model, tokenizer, config, cli=flag_style)
        before = conversation.settings.as_options()
        with pytest.raises(GenerationError) as raised:
            conversation.set(name, value)
        assert str(raised.value).startswith(expected) and "\n" not in str(raised.value)
        assert conversation.settings.as_options() == before


def test_bad_settings_are_refused_when_the_conversation_starts(alpaca):
    config, model, tokenizer = alpaca
    with pytest.raises(GenerationError, match=r"^--top-p 2: top-p must be in \(0, 1\]$"):
        Conversation(model, tokenizer, config, top_p=2, cli=True)


# --- saving ----------------------------------------------------------------------------------


def test_save_writes_messages_and_settings_as_json(chatml, tmp_path):
    config, model, tokenizer = chatml
    conversation = answered(Conversation(model, tokenizer, config, system="Be brief.",
                                         max_new_tokens=20, seed=1), ("Hi.", "Hello!"))
    path = conversation.save(tmp_path / "chat.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chat.json"]  # no temporary left
    assert json.loads(path.read_text(encoding="utf-8")) == {
        "messages": [{"role": "system", "content": "Be brief."},
                     {"role": "user", "content": "Hi."},
                     {"role": "assistant", "content": "Hello!"}],
        "settings": {"max_new_tokens": 20, "temperature": 0.0, "top_k": None, "top_p": None,
                     "seed": 1},
        "template": "chat_template", "context_length": 512, "trimmed_turns": 0}
    with pytest.raises(CheckpointError, match="directory is in the way"):
        conversation.save(tmp_path)


# --- a model's own chat template, as transformers renders it ------------------------------------


def test_a_multi_turn_conversation_is_apply_chat_templates(tmp_path):
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("tokenizers")
    from tests.plugins.test_hf_tokenizer import make_hf_folder

    folder = make_hf_folder(tmp_path / "llama3ish")
    config = load_config({"model": {"tokenizer": {"name": "hf", "path": str(folder)},
                                    "context_length": 256, "emb_dim": 16, "n_layers": 1,
                                    "n_heads": 2}})
    tokenizer = build_tokenizer(config)
    model = build_model(config, tokenizer=tokenizer)
    conversation = Conversation(model, tokenizer, config, system="Be brief.")
    assert conversation.template.name == "chat_template" and conversation.stop == "<|eot_id|>"
    answered(conversation, ("Hi there.", "Hello!"), ("Name a fruit.", "A pear."))
    messages = [*conversation.messages, {"role": "user", "content": "And a tree?"}]
    reference = transformers.AutoTokenizer.from_pretrained(str(folder))
    text = reference.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert conversation.render("And a tree?") == text
    ids, _ = conversation.prompt_ids("And a tree?")
    assert ids == reference(text, add_special_tokens=False)["input_ids"]
