"""A conversation with a model, kept in its prompt template: what ``llmbricks chat`` drives.

The template is the one the model was finetuned in (``instruction.prompt_template``): the run's
``data.prompt``, else the model's own chat template, else alpaca. A template that renders a
whole conversation (``render(messages, add_generation_prompt)``, as the ``chat_template`` prompt
does) is given every message. A template that renders one record (alpaca, phi3) was never shown
a conversation, so one is made of what it knows: ``prompt(turn) + response(turn)`` for each past
turn, then ``prompt(new message)``, concatenated. Either way the text is encoded as in training:
only the special tokens the template writes are ids, a message's special-looking text stays text
(``instruction.encode_templated``), and an answer stops at the template's end token.

The context window (the model's position table, else its ``context_length``) holds the prompt and
the new tokens; the oldest turns leave the prompt when they no longer fit. They stay in
``messages`` (what ``save`` writes); only the model stops seeing them.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..config import MAX_SEED
from ..errors import ConfigError, InputError, LlmbricksError, did_you_mean
from ..interfaces import Model, PromptTemplate, Tokenizer
from ..store.atomic import write_atomic
from ..store.text_input import check_text
from . import generation
from .generation import FLAGS, GenerationError, check_generation_params
from .instruction import encode_templated, end_token, extract_response, prompt_template

#: What ``max_new_tokens`` is by default: this many, or half the context when that is shorter.
DEFAULT_MAX_NEW_TOKENS = 256
#: The settings ``set`` changes; ``None`` (``none`` as text) turns the optional ones off.
SETTINGS = ("max_new_tokens", "temperature", "top_k", "top_p", "seed")
OPTIONAL = ("top_k", "top_p", "seed")
#: A system text looked for in a template's output, to learn whether it shows a system message.
_PROBE = "\ue000probe\ue000"


@dataclass
class ChatSettings:
    """The sampling settings of every answer (those of ``llmbricks generate``; ``seed`` is the
    first answer's, see ``Conversation.reply``)."""

    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    temperature: float = 0.0
    top_k: int | None = None
    top_p: float | None = None
    seed: int | None = None

    def as_options(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Turn:
    """One exchange: the user's message and the assistant's answer (stripped)."""

    user: str
    assistant: str


def parse_setting(name: str, text: str) -> Any:
    """A setting's value typed as text: a number, or ``None`` for ``none`` (optional settings).

    Text that is not a number is returned as is, so ``check_generation_params`` refuses it with
    the flag's own message.
    """
    text = text.strip()
    if text.lower() == "none" and name in OPTIONAL:
        return None
    kind = float if name in ("temperature", "top_p") else int
    try:
        return kind(text)
    except ValueError:
        return text


def setting_name(name: str) -> str:
    """``top-k``, ``--top-k`` or ``top_k``: the setting ``top_k``; ``temp``, the one setting it
    begins; an unknown name is refused."""
    key = name.strip().lstrip("-").replace("-", "_").lower()
    starting = [setting for setting in SETTINGS if setting.startswith(key)]
    if key not in SETTINGS and len(key) >= 3 and len(starting) == 1:
        key = starting[0]  # "temp", "max": one setting starts so
    if key not in SETTINGS:
        raise GenerationError(f"unknown setting '{name}'{did_you_mean(key, SETTINGS)} (the "
                              f"settings: {', '.join(SETTINGS)})")
    return key


class Conversation:
    """Messages with a model, rendered in its prompt template, each answer streamed as it comes.

    ``reply(text)`` answers a user message and keeps both as a turn; ``reset()`` forgets the turns
    (the system message and the settings stay); ``save(path)`` writes the messages and the
    settings as JSON. ``cli=True`` names the CLI's flags in the settings' error messages.
    """

    def __init__(self, model: Model, tokenizer: Tokenizer | None, config: Any = None, *,
                 template: PromptTemplate | None = None, system: str | None = None,
                 max_new_tokens: int | None = None, temperature: float = 0.0,
                 top_k: int | None = None, top_p: float | None = None, seed: int | None = None,
                 registry: Any = None, cli: bool = False) -> None:
        generation.check_generates(model)
        if tokenizer is None:
            raise ConfigError("chat needs the model's tokenizer to encode the messages; this "
                              "model has none")
        if template is None:
            if config is None:
                raise ConfigError("give the run's config (its data.prompt picks the template) "
                                  "or a template")
            template = prompt_template(config, registry, tokenizer)
        self.model, self.tokenizer, self.template = model, tokenizer, template
        self.cli = cli
        #: Prompt and answer together fit here: a position table's size, else the context length.
        self.context_length: int = model.positions_limit() or model.dims.context_length
        if max_new_tokens is None:
            max_new_tokens = min(DEFAULT_MAX_NEW_TOKENS, self.context_length // 2)
        self.settings = ChatSettings()
        for name, value in (("max_new_tokens", max_new_tokens), ("temperature", temperature),
                            ("top_k", top_k), ("top_p", top_p), ("seed", seed)):
            self.set(name, value)
        self.stop = end_token(tokenizer, template)
        self.format = ChatFormat(tokenizer, template)
        self.turns: list[Turn] = []
        self.first_seen = 0  # turns before this one no longer fit the context
        self.system: str | None = None
        params = getattr(template, "params", None)
        self.set_system(system if system is not None else getattr(params, "system", None))

    # --- settings ---------------------------------------------------------------------------

    def set(self, name: str, value: Any) -> Any:
        """Change one setting; text (``"0.7"``, ``"none"``) is parsed. Returns the new value.

        A bad value is refused with generation's own message (``--top-p 1.5: top-p must be in
        (0, 1]`` for the CLI), and so is a ``max_new_tokens`` that leaves no room for a prompt.
        """
        key = setting_name(name)
        if isinstance(value, str):
            value = parse_setting(key, value)
        check_generation_params(**{key: value}, cli=self.cli)
        if key == "max_new_tokens" and value >= self.context_length:
            rule = (f"must be below the model's {self.context_length}-token context, which holds "
                    "the prompt too")
            flag = FLAGS[key]
            raise GenerationError(f"{flag} {value}: {flag.lstrip('-')} {rule}" if self.cli
                                  else f"{key} {rule}, got {value}")
        setattr(self.settings, key, value)
        return value

    def set_system(self, text: str | None) -> str:
        """Set the system message (``None`` or blank clears it); returns how it is used.

        A chat template that has no system role (it refuses one, or leaves it out) gets the text
        at the top of the first user message the prompt holds; a one-record template (alpaca)
        gets it before the whole conversation. Either way it stays when old turns are trimmed.
        """
        if text is not None:
            if not isinstance(text, str):
                raise InputError(f"the system message must be text, got {type(text).__name__}")
            check_text(text, "the system message")
            self._check_encodes(text, "the system message")
        self.system = text.strip() if text and text.strip() else None
        if self.system is None:
            return "no system message"
        name = getattr(self.template, "name", type(self.template).__name__)
        if not self.format.multi_turn:
            return (f"the '{name}' template has no system role: the text goes before the "
                    "conversation, followed by a blank line")
        if self.format.system_role:
            return "the template's system message"
        return (f"the '{name}' template has no system role: the text opens the first user "
                "message, followed by a blank line")

    def _check_encodes(self, text: str, what: str) -> None:
        """A tokenizer that cannot encode ``text`` (a character outside a char vocabulary) says
        where in ``text``, not where in the whole prompt."""
        try:
            self.tokenizer.encode(text)
        except LlmbricksError as exc:
            raise type(exc)(f"{what}: {exc}") from None

    # --- the conversation -------------------------------------------------------------------

    @property
    def messages(self) -> list[dict[str, str]]:
        """Every message as chat APIs write them: the system message first, then each turn's
        user and assistant messages (the trimmed ones included)."""
        system = [{"role": "system", "content": self.system}] if self.system else []
        return [*system, *({"role": role, "content": text} for turn in self.turns
                           for role, text in (("user", turn.user), ("assistant", turn.assistant)))]

    def reset(self) -> None:
        """Forget every turn; the system message and the settings stay."""
        self.turns, self.first_seen = [], 0

    def render(self, text: str, turns: list[Turn] | None = None) -> str:
        """The prompt the model continues to answer ``text`` after ``turns`` (default: those in
        the context), as text."""
        seen = self.turns[self.first_seen:] if turns is None else turns
        render, record = self.format.renderer(self.system, seen, text)
        return render(record)

    def prompt_ids(self, text: str) -> tuple[list[int], int]:
        """The ids of the prompt that answers ``text``, and how many more of the oldest turns had
        to leave it so that it and ``max_new_tokens`` fit the context.

        A message that does not fit even alone is an ``InputError``.
        """
        _, ids, dropped = self._fit(text)
        return ids, dropped

    def _fit(self, text: str) -> tuple[str, list[int], int]:
        """``prompt_ids``, with the prompt's text."""
        seen = self.turns[self.first_seen:]
        room = self.context_length - self.settings.max_new_tokens
        for dropped in range(len(seen) + 1):
            render, record = self.format.renderer(self.system, seen[dropped:], text)
            ids = encode_templated(self.tokenizer, render, record)
            if len(ids) <= room:
                return render(record), ids, dropped
        with_system = " (with the system message)" if self.system else ""
        raise InputError(f"the message does not fit: its prompt{with_system} is {len(ids)} tokens, "
                         f"and with max_new_tokens {self.settings.max_new_tokens} it exceeds the "
                         f"{self.context_length}-token context; shorten it or lower max_new_tokens")

    def reply(self, text: str, *, on_text: Callable[[str], None] | None = None,
              on_trim: Callable[[str], None] | None = None) -> str:
        """The model's answer to ``text``, kept with it as a turn; returns the answer (stripped).

        ``on_text(piece)`` streams the answer as it is generated, from its first visible
        character. ``on_trim(note)`` hears a one-line note when old turns leave the prompt.
        Ctrl-C (``KeyboardInterrupt``) during the answer keeps what was said as the turn's
        answer, then goes on up to the caller. With a ``seed``, the conversation's answer ``k``
        (from 0 since the last ``reset``, trimmed turns counted) samples with ``seed + k``: the same messages replay the
        same answers, yet no two answers reuse the same random draws.
        """
        if not isinstance(text, str):
            raise InputError(f"a message must be text, got {type(text).__name__}")
        check_text(text, "the message")
        if not text.strip():
            raise InputError("the message is empty: type some text")
        self._check_encodes(text, "the message")
        prompt, ids, dropped = self._fit(text)
        if dropped:
            self.first_seen += dropped
            if on_trim is not None:
                on_trim(trim_note(dropped, self.context_length))
        said: list[str] = []

        def stream(row: int, piece: str) -> None:
            if not said:
                piece = piece.lstrip()
            if piece:
                said.append(piece)
                if on_text is not None:
                    on_text(piece)

        options = self.settings.as_options()
        if options["seed"] is not None:  # answer k samples with seed + k: no two share draws
            options["seed"] = (options["seed"] + len(self.turns)) % (MAX_SEED + 1)
        try:
            answer = generation.generate(self.model, self.tokenizer, prompt, stop=self.stop,
                                         prompt_ids=[ids], on_text=stream, **options)
        except KeyboardInterrupt:
            self.turns.append(Turn(text, extract_response("".join(said))))
            raise
        answer = extract_response(answer)  # type: ignore[arg-type]
        self.turns.append(Turn(text, answer))
        return answer

    def save(self, path: str | Path) -> Path:
        """Write the messages, the settings, the template and the context as JSON, atomically."""
        data = {"messages": self.messages, "settings": self.settings.as_options(),
                "template": getattr(self.template, "name", None),
                "context_length": self.context_length, "trimmed_turns": self.first_seen}
        return write_atomic(Path(path).expanduser(),
                            json.dumps(data, indent=2, ensure_ascii=False) + "\n")


class ChatFormat:
    """How a template renders a conversation, and its encoding (the model sees exactly this).

    Shared by ``Conversation`` and the server's chat completions, so a conversation reads the
    same to the model whether it comes from ``llmbricks chat`` or from an OpenAI client.
    """

    def __init__(self, tokenizer: Tokenizer, template: PromptTemplate) -> None:
        self.tokenizer, self.template = tokenizer, template
        #: A template that renders messages (a chat template) gets them all; others, records.
        self.multi_turn = callable(getattr(template, "render", None))

    @functools.cached_property
    def system_role(self) -> bool:
        """Whether the template shows a system message (one that refuses or drops it: no)."""
        if not self.multi_turn:
            return False
        messages = [{"role": "system", "content": _PROBE}, {"role": "user", "content": "hi"}]
        try:
            return _PROBE in self.template.render(messages, True)  # type: ignore[attr-defined]
        except ConfigError:  # "System role not supported" (Gemma's raise_exception)
            return False

    def ids(self, system: str | None, turns: list[Turn], text: str) -> list[int]:
        """The prompt's ids: special tokens only where the template writes them."""
        render, record = self.renderer(system, turns, text)
        return encode_templated(self.tokenizer, render, record)

    def renderer(self, system: str | None, turns: list[Turn], text: str
                 ) -> tuple[Callable[[Mapping[str, Any]], str], dict[str, str]]:
        """A render function of a flat record holding every message (``encode_templated`` finds
        the messages' special-looking text in its values), and that record."""
        record = {"system": system or "", "text": text}
        for i, turn in enumerate(turns):
            record[f"user{i}"], record[f"assistant{i}"] = turn.user, turn.assistant
        count = len(turns)
        if self.multi_turn:
            return (lambda r: self.template.render(  # type: ignore[attr-defined]
                self._messages_of(r, count), True)), record

        def concatenate(r: Mapping[str, Any]) -> str:
            parts = [f"{r['system']}\n\n"] if r["system"] else []
            for i in range(count):
                answered = {"instruction": r[f"user{i}"], "input": "", "output": r[f"assistant{i}"]}
                parts += [self.template.prompt(answered), self.template.response(answered)]
            parts.append(self.template.prompt({"instruction": r["text"], "input": "", "output": ""}))
            return "".join(parts)

        return concatenate, record

    def _messages_of(self, record: Mapping[str, Any], count: int) -> list[dict[str, str]]:
        users = [record[f"user{i}"] for i in range(count)] + [record["text"]]
        system = record["system"]
        if system and not self.system_role:
            users[0] = f"{system}\n\n{users[0]}"
        messages = [{"role": "system", "content": system}] if system and self.system_role else []
        for i, user in enumerate(users):
            messages.append({"role": "user", "content": user})
            if i < count:
                messages.append({"role": "assistant", "content": record[f"assistant{i}"]})
        return messages

    def messages_ids(self, messages: list[Mapping[str, str]]) -> list[int]:
        """The prompt that answers chat messages (``[{"role", "content"}]``, as OpenAI's API
        writes them): system messages first, then user and assistant turns, the last one the
        user's. Consecutive messages of one role are joined by a blank line."""
        system, turns, text = split_messages(messages)
        return self.ids(system, turns, text)


def split_messages(messages: list[Mapping[str, str]]) -> tuple[str | None, list[Turn], str]:
    """``(system, turns, last user message)`` of a list of chat messages; one line if the list
    cannot be read as a conversation."""
    merged: list[list[str]] = []  # [role, content], consecutive roles joined
    for message in messages:
        role, content = message.get("role"), message.get("content")
        if role not in ("system", "user", "assistant") or not isinstance(content, str):
            raise InputError(f"a message needs a role (system, user or assistant) and text "
                             f"content, got role {role!r}")
        if merged and merged[-1][0] == role:
            merged[-1][1] += "\n\n" + content
        else:
            merged.append([role, content])
    system = merged.pop(0)[1] if merged and merged[0][0] == "system" else None
    if any(role == "system" for role, _ in merged):
        raise InputError("system messages must come first, before the conversation")
    if not merged or merged[-1][0] != "user":
        raise InputError("the last message must be the user's: the model answers it")
    if merged[0][0] != "user":
        merged.insert(0, ["user", ""])  # an assistant that speaks first answered nothing
    turns = [Turn(merged[i][1], merged[i + 1][1]) for i in range(0, len(merged) - 1, 2)]
    return system, turns, merged[-1][1]


def messages_prompt_ids(tokenizer: Tokenizer, template: PromptTemplate,
                        messages: list[Mapping[str, str]]) -> list[int]:
    """``ChatFormat(tokenizer, template).messages_ids(messages)``."""
    return ChatFormat(tokenizer, template).messages_ids(messages)


def trim_note(dropped: int, context_length: int) -> str:
    """``[history trimmed: dropped 2 oldest turns to fit the 256-token context]``."""
    turns = "turn" if dropped == 1 else "turns"
    return (f"[history trimmed: dropped {dropped} oldest {turns} to fit the {context_length}-token "
            "context]")


__all__ = ["DEFAULT_MAX_NEW_TOKENS", "SETTINGS", "ChatFormat", "ChatSettings", "Conversation",
           "Turn", "messages_prompt_ids", "split_messages",
           "parse_setting", "setting_name", "trim_note"]
