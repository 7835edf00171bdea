"""A model's own chat template (Jinja, from its tokenizer_config.json), as a prompt template.

Why: an instruct checkpoint (Llama 3, Qwen, Gemma...) answers well only in the exact format it
was trained on, and that format ships with it as a Jinja template. Rendering the template itself
gives the text ``transformers``' ``apply_chat_template`` gives, character for character.

A record becomes the messages ``[system?, user]``, the user's content being the instruction and,
when there is one, ``"\\n\\n"`` and the input. ``prompt`` renders them with
``add_generation_prompt=True``; ``response`` is what rendering them with the assistant's answer
(and ``add_generation_prompt=False``) adds after that prompt: the output and whatever the template
closes an assistant turn with (``<|eot_id|>``). A template whose answered conversation does not
start with its prompt cannot be split so, and is refused.

Templates come from model repositories, so they are untrusted code: they run in Jinja's
``ImmutableSandboxedEnvironment`` (no attribute starting with ``_``, no mutation of the data),
with the helpers templates expect (``raise_exception``, ``strftime_now``, a ``tojson`` that does not
escape HTML, loop controls, the ``{% generation %}`` tag). Anything a template raises is one line.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from llmbricks.core.component import ParamsModel
from llmbricks.core.errors import ConfigError, InputError
from llmbricks.core.interfaces import PromptTemplate

#: Where a folder's template and special tokens are looked for, in order (the ``hf_`` names are
#: those of a tokenizer saved by llmbricks' ``hf`` tokenizer).
TEMPLATE_FILES = ("chat_template.jinja", "hf_chat_template.jinja")
CONFIG_FILES = ("tokenizer_config.json", "hf_tokenizer_config.json")
#: Older Jinja releases have known sandbox escapes.
MIN_JINJA = (3, 1, 6)


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


class ChatTemplate(PromptTemplate):
    """A model's own Jinja chat template (Llama 3, Qwen, Gemma...), rendered in a sandbox.

    ``prompt + response`` is ``apply_chat_template`` of the conversation with the answer; the
    prompt is the same conversation with ``add_generation_prompt=True``.
    """

    name = "chat_template"

    class Params(ParamsModel):
        template: str | None = Field(None, description="the Jinja chat template itself")
        path: str | None = Field(None, description="a model folder, or its tokenizer_config.json, "
                                 "holding chat_template (instead of 'template')")
        bos_token: str | None = Field(None, description="the template's bos_token (default: "
                                      "tokenizer_config.json's when 'path' is set)")
        eos_token: str | None = Field(None, description="the template's eos_token (default: "
                                      "tokenizer_config.json's when 'path' is set)")
        system: str | None = Field(None, description="a system message before each instruction")

        @model_validator(mode="after")
        def _one_source(self) -> ChatTemplate.Params:
            if self.template is not None and self.path is not None:
                raise ValueError("give 'template' or 'path', not both")
            return self

    def __init__(self, params: Params) -> None:
        super().__init__(params)
        if params.path is not None:
            source, bos, eos = read_template(Path(params.path).expanduser())
        elif params.template is not None:
            source, bos, eos = params.template, None, None
        else:
            raise ConfigError("prompt 'chat_template' needs 'template' (the Jinja source) or "
                              "'path' (a model folder or its tokenizer_config.json)")
        self.source = source
        self.tokens = {key: value for key, value in (
            ("bos_token", params.bos_token if params.bos_token is not None else bos),
            ("eos_token", params.eos_token if params.eos_token is not None else eos),
        ) if value is not None}
        try:
            self._template = environment().from_string(source)
        except Exception as exc:  # TemplateSyntaxError, or the sandbox refusing at compile time
            line = getattr(exc, "lineno", None)
            where = f" (line {line})" if line else ""
            raise ConfigError(f"chat template does not compile{where}: {_one_line(exc)}") from None

    def messages(self, record: Mapping[str, str]) -> list[dict[str, str]]:
        """The conversation a record stands for: the system message (if any), then the user."""
        content = record["instruction"]
        if record.get("input"):
            content += "\n\n" + record["input"]
        system = [{"role": "system", "content": self.params.system}] if self.params.system else []
        return [*system, {"role": "user", "content": content}]

    def render(self, messages: list[dict[str, str]], add_generation_prompt: bool) -> str:
        """The template on ``messages``, as ``apply_chat_template(..., tokenize=False)`` renders it."""
        from jinja2.exceptions import SecurityError, UndefinedError

        try:
            return self._template.render(messages=messages, tools=None, documents=None,
                                         add_generation_prompt=add_generation_prompt, **self.tokens)
        except TemplateRefused as exc:
            raise ConfigError(f"chat template refused the conversation: {_one_line(exc)}") from None
        except SecurityError as exc:
            raise ConfigError(f"chat template stopped by the sandbox: {_one_line(exc)}") from None
        except UndefinedError as exc:
            raise ConfigError(f"chat template uses an undefined value: {_one_line(exc)}") from None
        except Exception as exc:  # TemplateError, or Python's own (TypeError, ZeroDivisionError...)
            raise ConfigError(f"chat template failed: {type(exc).__name__}: "
                              f"{_one_line(exc)}") from None

    def prompt(self, record: Mapping[str, str]) -> str:
        return self.render(self.messages(record), add_generation_prompt=True)

    def response(self, record: Mapping[str, str]) -> str:
        messages = self.messages(record)
        prompt = self.render(messages, add_generation_prompt=True)
        full = self.render([*messages, {"role": "assistant", "content": record["output"]}],
                           add_generation_prompt=False)
        if not full.startswith(prompt):
            at = len(os.path.commonprefix([prompt, full]))
            raise ConfigError(
                "chat template cannot be split into prompt and response: the conversation with "
                "the answer does not start with the prompt (add_generation_prompt=True); they "
                f"differ at character {at}: prompt has {prompt[at:at + 30]!r}, the answered "
                f"conversation {full[at:at + 30]!r}")
        return full[len(prompt):]


class TemplateRefused(Exception):
    """What ``raise_exception(message)`` raises inside a template."""


def _raise_exception(message: str) -> None:
    raise TemplateRefused(message)


def _strftime_now(format: str) -> str:
    return datetime.now().strftime(format)


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None,
            separators: tuple[str, str] | None = None, sort_keys: bool = False) -> str:
    """JSON as ``json.dumps`` writes it: Jinja's own ``tojson`` escapes ``<``, ``>`` and ``&``."""
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


class _Dict:
    """``dict`` for templates: calls and ``fromkeys``, not the type itself (no type tricks)."""

    def __call__(self, *args: Any, **kwargs: Any) -> dict[Any, Any]:
        return dict(*args, **kwargs)

    def fromkeys(self, keys: Any, value: Any = None) -> dict[Any, Any]:
        return dict.fromkeys(keys, value)


@functools.cache
def environment() -> Any:
    """The sandbox every chat template runs in (built once, on first use)."""
    import jinja2
    from jinja2 import nodes
    from jinja2.ext import Extension, loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment
    from jinja2.utils import Namespace

    found = tuple(int(part) for part in jinja2.__version__.split(".")[:3] if part.isdigit())
    if found < MIN_JINJA:
        raise ConfigError(f"chat templates need jinja2>={'.'.join(map(str, MIN_JINJA))} (older "
                          f"releases have sandbox escapes); found {jinja2.__version__}: "
                          "pip install -U jinja2")

    class Generation(Extension):
        """``{% generation %}...{% endgeneration %}``: marks the assistant's text; rendered as is."""

        tags = {"generation"}

        def parse(self, parser: Any) -> Any:
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return nodes.Scope(body).set_lineno(lineno)

    class Sandbox(ImmutableSandboxedEnvironment):
        """Jinja's sandbox, but an unsafe attribute raises at once instead of rendering as ''."""

        def unsafe_undefined(self, obj: Any, attribute: str) -> Any:
            raise jinja2.exceptions.SecurityError(
                f"access to attribute {attribute!r} of a {type(obj).__name__} is not allowed")

    class SafeNamespace(Namespace):
        """``namespace()`` that refuses attribute names starting with ``_``."""

        def __setitem__(self, name: str, value: Any) -> None:
            if isinstance(name, str) and name.startswith("_"):
                raise jinja2.exceptions.SecurityError(f"namespace attribute {name!r} is not allowed")
            super().__setitem__(name, value)

    def namespace(*args: Any, **kwargs: Any) -> SafeNamespace:
        space = SafeNamespace()
        for name, value in dict(*args, **kwargs).items():
            space[name] = value
        return space

    env = Sandbox(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols, Generation])
    env.globals.update(raise_exception=_raise_exception, strftime_now=_strftime_now,
                       namespace=namespace, dict=_Dict())
    env.filters["tojson"] = _tojson
    return env


def read_template(path: Path) -> tuple[str, str | None, str | None]:
    """``(template, bos_token, eos_token)`` from a model folder or a tokenizer_config.json."""
    if path.is_dir():
        jinja = next((path / n for n in TEMPLATE_FILES if (path / n).is_file()), None)
        config_file = next((path / n for n in CONFIG_FILES if (path / n).is_file()), None)
        if jinja is None and config_file is None:
            raise InputError(f"{path} holds no chat template (looked for {', '.join(TEMPLATE_FILES)} "
                             f"and {', '.join(CONFIG_FILES)})")
    elif path.is_file():
        jinja, config_file = None, path
    else:
        raise InputError(f"{path} does not exist (the 'chat_template' prompt takes a model folder "
                         "or its tokenizer_config.json)")
    config = _read_config(config_file) if config_file is not None else {}
    if jinja is not None:
        template: Any = _read_text(jinja)
    else:
        template = config.get("chat_template")
        if isinstance(template, list):  # named templates: the "default" one
            template = {t.get("name"): t.get("template")
                        for t in template if isinstance(t, dict)}.get("default")
    if not isinstance(template, str):
        raise InputError(f"{config_file} has no chat_template (a string, or a list holding one "
                         "named 'default'); give the template with the 'template' param")
    return template, _token(config.get("bos_token")), _token(config.get("eos_token"))


def _read_text(file: Path) -> str:
    try:
        return file.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {file}: {_one_line(exc)}") from None


def _read_config(file: Path) -> dict[str, Any]:
    try:
        config = json.loads(_read_text(file))
    except ValueError as exc:
        raise InputError(f"{file} is not valid JSON: {_one_line(exc)}") from None
    if not isinstance(config, dict):
        raise InputError(f"{file} must hold a JSON object")
    return config


def _token(value: Any) -> str | None:
    """A special token as tokenizer_config.json writes it: a string, or ``{"content": ...}``."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None
