"""The `chat_template` prompt against transformers' apply_chat_template, and its sandbox."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmbricks.core.errors import ComponentError, ConfigError, InputError
from llmbricks.core.interfaces import PromptTemplate
from llmbricks.core.registry import get_registry
from tests.plugins.test_hf_tokenizer import LLAMA3_TEMPLATE, make_hf_folder
from tests.plugins.test_prompts import BOOK, NO_INPUT

transformers = pytest.importorskip("transformers")

#: ChatML as Qwen writes it: a default system message, namespace and loop controls, tojson.
CHATML_TEMPLATE = """{%- set ns = namespace(system=false) -%}
{%- for message in messages -%}
{%- if message.role == 'system' %}{% set ns.system = true %}{% break %}{% endif -%}
{%- endfor -%}
{%- if not ns.system %}<|im_start|>system
You are a helpful assistant. {{ {'tag': '<ok> & café'} | tojson }}<|im_end|>
{% endif -%}
{%- for message in messages %}
{%- if message.role not in ['system', 'user', 'assistant'] -%}
{{ raise_exception('Unknown role: ' + message.role) }}
{%- endif -%}
<|im_start|>{{ message.role }}
{{ message.content }}<|im_end|>
{% endfor -%}
{%- if add_generation_prompt %}<|im_start|>assistant
{% endif -%}"""
#: Mistral's rule: roles alternate user/assistant, and a system message is refused.
ALTERNATING_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{% endif %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% else %}{{ message['content'] + eos_token }}{% endif %}{% endfor %}"
)
RECORDS = [BOOK, NO_INPUT, {"instruction": "Say  hi.\n", "input": "  spaced 東京 ", "output": " Hi! "}]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return make_hf_folder(tmp_path_factory.mktemp("llama3ish"))


def chat(**params) -> PromptTemplate:
    return get_registry().build("prompt", {"name": "chat_template", **params})


def apply(folder: Path, messages: list[dict[str, str]], **kwargs) -> str:
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder))
    return tokenizer.apply_chat_template(messages, tokenize=False, **kwargs)


def conversation(record: dict[str, str], system: str | None = None) -> list[dict[str, str]]:
    user = record["instruction"] + (f"\n\n{record['input']}" if record["input"] else "")
    head = [{"role": "system", "content": system}] if system else []
    return [*head, {"role": "user", "content": user}]


def assert_like_transformers(template: PromptTemplate, folder: Path, system: str | None = None,
                             **kwargs) -> None:
    for record in RECORDS:
        messages = conversation(record, system)
        answered = [*messages, {"role": "assistant", "content": record["output"]}]
        assert template.prompt(record) == apply(folder, messages, add_generation_prompt=True, **kwargs)
        assert template.prompt(record) + template.response(record) == apply(folder, answered, **kwargs)


def test_registered_as_a_prompt():
    assert "chat_template" in get_registry().names("prompt")


def test_llama3_template_from_the_folder_and_from_its_config_file(model_dir):
    by_folder = chat(path=str(model_dir))
    assert_like_transformers(by_folder, model_dir)
    assert_like_transformers(chat(path=str(model_dir / "tokenizer_config.json"), system="Be brief."),
                             model_dir, system="Be brief.")
    assert by_folder.prompt(BOOK) == (
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nIdentify the correct spelling "
        "of the following word.\n\nOcassion<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")
    assert by_folder.response(BOOK) == "The correct spelling is 'Occasion.'<|eot_id|>"


def test_template_given_inline_with_its_tokens(model_dir):
    inline = chat(template=LLAMA3_TEMPLATE, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>")
    assert_like_transformers(inline, model_dir)
    with pytest.raises(ConfigError, match="undefined value: 'bos_token' is undefined"):
        chat(template=LLAMA3_TEMPLATE).prompt(BOOK)  # the template needs it, and it was not given


def test_chatml_with_namespace_loop_controls_and_tojson(tmp_path):
    folder = make_hf_folder(tmp_path / "chatml", template=CHATML_TEMPLATE)
    assert_like_transformers(chat(path=str(folder)), folder)
    assert_like_transformers(chat(path=str(folder), system="Answer in French."), folder,
                             system="Answer in French.")
    assert chat(path=str(folder)).response(BOOK) == "The correct spelling is 'Occasion.'<|im_end|>\n"


def test_a_saved_hf_tokenizer_and_a_chat_template_jinja_folder(model_dir, tmp_path):
    get_registry().build("tokenizer", {"name": "hf", "path": str(model_dir)}).save(tmp_path / "saved")
    transformers.AutoTokenizer.from_pretrained(str(model_dir)).save_pretrained(tmp_path / "resaved")
    assert (tmp_path / "resaved" / "chat_template.jinja").is_file()
    expected = chat(path=str(model_dir))
    for folder in (tmp_path / "saved", tmp_path / "resaved"):
        template = chat(path=str(folder))
        assert [template.prompt(r) + template.response(r) for r in RECORDS] == \
            [expected.prompt(r) + expected.response(r) for r in RECORDS]


# --- refusals: one line each ------------------------------------------------------------------


def refusal(excinfo: pytest.ExceptionInfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def test_raise_exception_is_a_one_line_config_error():
    mistral = chat(template=ALTERNATING_TEMPLATE, bos_token="<s>", eos_token="</s>")
    assert mistral.prompt(BOOK) + mistral.response(BOOK) == (
        f"<s>[INST] {BOOK['instruction']}\n\n{BOOK['input']} [/INST]{BOOK['output']}</s>")
    with pytest.raises(ConfigError, match="chat template refused the conversation: Conversation "
                                          "roles must alternate") as excinfo:
        chat(template=ALTERNATING_TEMPLATE, system="Be brief.").prompt(BOOK)
    refusal(excinfo)
    with pytest.raises(ConfigError, match="refused the conversation: line one line two"):
        chat(template="{{ raise_exception('line one\nline two') }}").prompt(BOOK)


@pytest.mark.parametrize("template", [
    "{{ messages.__class__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__.os.system('echo escaped') }}",
    "{% for m in messages %}{{ m.__class__ }}{% endfor %}",
    "{% set ns = namespace() %}{% set ns.__dict__ = 1 %}",
])
def test_sandbox_escapes_are_refused(template, capfd):
    with pytest.raises(ConfigError, match="chat template stopped by the sandbox") as excinfo:
        chat(template=template).prompt(BOOK)
    refusal(excinfo)
    assert "escaped" not in capfd.readouterr().out


def test_the_data_cannot_be_changed_by_a_template():
    with pytest.raises(ConfigError, match="stopped by the sandbox: .*'append'"):
        chat(template="{{ messages.append({'role': 'x'}) }}").prompt(BOOK)


@pytest.mark.parametrize("template,message", [
    ("{{ foo.bar }}", "chat template uses an undefined value: 'foo' is undefined"),
    ("{{ 1 / 0 }}", "chat template failed: ZeroDivisionError: division by zero"),
    ("{% for m in messages %}", "chat template does not compile (line 1): "),
])
def test_broken_templates_are_one_line_config_errors(template, message):
    with pytest.raises(ConfigError) as excinfo:
        chat(template=template).prompt(BOOK)
    assert refusal(excinfo).startswith(message)


def test_a_template_that_cannot_be_split_is_refused():
    # The generation prompt says "<assistant>\n", an answered turn "<assistant>" right before the text.
    template = ("{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}"
                "{% if add_generation_prompt %}<assistant>\n{% endif %}")
    split = chat(template=template)
    assert split.prompt(BOOK).endswith("<assistant>\n")
    with pytest.raises(ConfigError, match="cannot be split into prompt and response") as excinfo:
        split.response(BOOK)
    assert "prompt has '\\n'" in refusal(excinfo)


def test_params_and_paths_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="needs 'template' .* or 'path'"):
        chat()
    with pytest.raises(ComponentError, match="give 'template' or 'path', not both"):
        chat(template="x", path=str(tmp_path))
    with pytest.raises(InputError, match="does not exist") as excinfo:
        chat(path=str(tmp_path / "nope"))
    refusal(excinfo)
    with pytest.raises(InputError, match="holds no chat template"):
        chat(path=str(tmp_path))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"eos_token": "</s>"}))
    with pytest.raises(InputError, match="has no chat_template"):
        chat(path=str(tmp_path))
    (tmp_path / "tokenizer_config.json").write_text("{not json")
    with pytest.raises(InputError, match="is not valid JSON"):
        chat(path=str(tmp_path))


def test_named_templates_and_token_objects_in_the_config(tmp_path):
    config = {"chat_template": [{"name": "tool_use", "template": "tools"},
                                {"name": "default", "template": "{{ bos_token }}{{ eos_token }}"}],
              "bos_token": {"content": "<s>", "__type": "AddedToken"}, "eos_token": "</s>"}
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    assert chat(path=str(tmp_path)).prompt(BOOK) == "<s></s>"
    assert chat(path=str(tmp_path), eos_token="<end>").prompt(BOOK) == "<s><end>"
