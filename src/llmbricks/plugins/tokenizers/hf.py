"""A Hugging Face ``tokenizer.json`` (Llama, Qwen, Gemma...), read and run by the ``tokenizers`` library.

Why the library and not a port: a checkpoint's ids are whatever its own ``tokenizer.json`` gives
(normalizers, pre-tokenizers, added tokens, byte fallback), so running the file with the library
that wrote it is the only way to be sure the ids are the ones the model was trained on. Encoding
matches ``transformers.AutoTokenizer(text, add_special_tokens=False)``: no BOS is added.

Special tokens are ordinary text unless ``allowed_special`` names them. The library can only
switch all specials on or off (``encode_special_tokens``), so a partial set runs on a copy of the
tokenizer in which the allowed ones are marked non-special: the library then matches exactly
those, with its own rules (``lstrip``, ``rstrip``, ``normalized``), and splits the others as text.

Files (``save``/``load``): ``tokenizer.json`` is llmbricks' own state file (``state.py``), so
Hugging Face's files are written beside it, byte for byte, under other names:
``hf_tokenizer.json``, and when the source had them ``hf_tokenizer_config.json`` and
``hf_chat_template.jinja``. The saved params name no path, so the folder alone rebuilds it.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from llmbricks.core.component import ParamsModel
from llmbricks.core.errors import ConfigError, DataError, InputError
from llmbricks.core.interfaces import Tokenizer
from llmbricks.core.store.atomic import write_atomic
from llmbricks.plugins.tokenizers.state import read_state, write_state

if TYPE_CHECKING:
    from tokenizers import Tokenizer as Library

HF_TOKENIZER = "tokenizer.json"
HF_CONFIG = "tokenizer_config.json"
HF_TEMPLATE = "chat_template.jinja"
#: Hugging Face's file name -> the name it is saved under, beside our own tokenizer.json.
SAVED_AS = {HF_TOKENIZER: "hf_tokenizer.json", HF_CONFIG: "hf_tokenizer_config.json",
            HF_TEMPLATE: "hf_chat_template.jinja"}
FORMAT_VERSION = 1
_MAX_VARIANTS = 8  # tokenizers kept for distinct partial allowed_special sets


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


@dataclass(frozen=True)
class HFFiles:
    """The source files, as bytes: kept so that ``save`` writes them unchanged."""

    tokenizer: bytes
    config: bytes | None = None
    template: bytes | None = None
    origin: str = HF_TOKENIZER  # where the tokenizer came from, for error messages

    @classmethod
    def read(cls, path: str | Path) -> HFFiles:
        """A folder holding tokenizer.json (and maybe tokenizer_config.json), or the file itself."""
        path = Path(path).expanduser()
        if path.is_dir():
            file = path / HF_TOKENIZER
            if not file.is_file():
                raise InputError(f"{path} holds no {HF_TOKENIZER}; give the 'hf' tokenizer a "
                                 f"Hugging Face model folder or its {HF_TOKENIZER} file")
        elif path.is_file():
            file = path
        else:
            raise InputError(f"{path} does not exist (the 'hf' tokenizer takes a folder holding "
                             f"{HF_TOKENIZER}, or the file itself)")
        folder = file.parent
        return cls(_read(file), _read_optional(folder / HF_CONFIG),
                   _read_optional(folder / HF_TEMPLATE), origin=str(file))


def _read(file: Path) -> bytes:
    try:
        return file.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {file}: {exc.strerror or exc}") from None


def _read_optional(file: Path) -> bytes | None:
    return _read(file) if file.is_file() else None


def _text(data: bytes, origin: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{origin} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def parse_tokenizer(text: str, origin: str) -> Library:
    """The library's tokenizer from ``tokenizer.json`` text, or one line saying why not."""
    try:
        from tokenizers import Tokenizer as Library
    except ImportError:
        raise ConfigError("the 'hf' tokenizer needs the 'tokenizers' package: "
                          "pip install 'tokenizers>=0.15.1'") from None
    try:
        return Library.from_str(text)
    except Exception as exc:  # the library raises a bare Exception for every parse failure
        hint = ""
        try:
            state = json.loads(text)
        except ValueError:
            state = None
        if isinstance(state, dict) and "model" not in state:
            hint = (f" (it is a tokenizer saved by llmbricks, '{state['name']}': load its folder "
                    "with load_tokenizer or `-t FOLDER`)" if "name" in state else
                    " (it has no 'model': is it tokenizer_config.json or another JSON file?)")
        raise InputError(f"{origin} is not a valid Hugging Face tokenizer.json: "
                         f"{_one_line(exc)}{hint}") from None


def tokenizer_config(files: HFFiles) -> dict[str, Any]:
    """tokenizer_config.json as a dict (empty when the source has none)."""
    if files.config is None:
        return {}
    origin = _sibling(files, HF_CONFIG)
    try:
        config = json.loads(_text(files.config, origin))
    except ValueError as exc:
        raise InputError(f"{origin} is not valid JSON: {_one_line(exc)}") from None
    if not isinstance(config, dict):
        raise InputError(f"{origin} must hold a JSON object")
    return config


def _sibling(files: HFFiles, hf_name: str) -> str:
    """Where the source's ``hf_name`` file was (under its saved name in a saved folder)."""
    origin = Path(files.origin)
    saved = origin.name == SAVED_AS[HF_TOKENIZER]
    return str(origin.with_name(SAVED_AS[hf_name] if saved else hf_name))


def token_name(value: Any) -> str | None:
    """A special token as tokenizer_config.json writes it: a string, or ``{"content": ...}``."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


def chat_template_of(config: dict[str, Any], files: HFFiles) -> str | None:
    """The model's chat template: chat_template.jinja, else the config's (its ``default`` one)."""
    if files.template is not None:
        return _text(files.template, _sibling(files, HF_TEMPLATE))
    template = config.get("chat_template")
    if isinstance(template, list):  # [{"name": "default", "template": ...}, {"name": "tool_use", ...}]
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default")
    return template if isinstance(template, str) else None


def vocab_size_of(library: Library) -> int:
    """Every id the tokenizer can give is below this (the vocabulary with added tokens)."""
    vocab = library.get_vocab(with_added_tokens=True)
    return max(library.get_vocab_size(with_added_tokens=True), max(vocab.values(), default=-1) + 1)


@functools.lru_cache(maxsize=16)
def _known_size(file: str, stamp: tuple[int, int]) -> int:
    """Cached by (file, mtime, size): a config is resolved several times per command."""
    return vocab_size_of(parse_tokenizer(_text(_read(Path(file)), file), file))


class HFTokenizer(Tokenizer):
    """A Hugging Face tokenizer.json (Llama, Qwen, Gemma...), run by the tokenizers library.

    Encodes as ``AutoTokenizer(text, add_special_tokens=False)`` does. Lossless for byte-level
    tokenizers (GPT-2, Llama 3, Qwen); one whose tokenizer.json normalizes text is not.
    """

    name = "hf"

    class Params(ParamsModel):
        path: str | None = Field(None, description="a folder holding tokenizer.json (and "
                                 "tokenizer_config.json), or the tokenizer.json file; required")

    def __init__(self, params: Params, files: HFFiles | None = None) -> None:
        super().__init__(params)
        if files is None:
            files = HFFiles.read(_require_path(params))
        self._files = files
        self._json = _text(files.tokenizer, files.origin)
        self._plain = parse_tokenizer(self._json, files.origin)
        self._plain.encode_special_tokens = True  # specials in the text are text
        self._variants: dict[frozenset[str], Library] = {}
        self._specials = {token.content: int(i) for i, token in
                          sorted(self._plain.get_added_tokens_decoder().items()) if token.special}
        self._vocab_size = vocab_size_of(self._plain)
        config = tokenizer_config(files)
        #: From tokenizer_config.json (None when absent): for chat templates and stop tokens.
        self.bos_token = token_name(config.get("bos_token"))
        self.eos_token = token_name(config.get("eos_token"))
        self.chat_template = chat_template_of(config, files)

    @classmethod
    def known_vocab_size(cls, params: Params) -> int | None:
        if params.path is None:  # a saved tokenizer folder knows it; a config alone cannot
            return None
        path = Path(params.path).expanduser()
        file = path / HF_TOKENIZER if path.is_dir() else path
        if not file.is_file():
            HFFiles.read(path)  # raises the one-line error that says what is missing
        info = file.stat()
        return _known_size(str(file.resolve()), (info.st_mtime_ns, info.st_size))

    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    @property
    def special_tokens(self) -> dict[str, int]:
        return dict(self._specials)

    def _encoder(self, allowed_special: Iterable[str] | Literal["all"]) -> Library:
        """The library tokenizer that matches exactly the allowed specials."""
        if allowed_special == "all":
            allowed = frozenset(self._specials)
        else:  # names that are not special tokens here are ignored, as tiktoken does
            names = {allowed_special} if isinstance(allowed_special, str) else allowed_special
            allowed = frozenset(names).intersection(self._specials)
        if not allowed:
            return self._plain
        variant = self._variants.get(allowed)
        if variant is None:
            if len(self._variants) >= _MAX_VARIANTS:
                self._variants.clear()
            variant = self._variants[allowed] = self._allowing(allowed)
        return variant

    def _allowing(self, allowed: frozenset[str]) -> Library:
        if allowed == self._specials.keys():
            variant = parse_tokenizer(self._json, self._files.origin)
            variant.encode_special_tokens = False
            return variant
        state = json.loads(self._json)
        for token in state.get("added_tokens", []):
            if token.get("special") and token.get("content") in allowed:
                token["special"] = False  # non-special added tokens are always matched
        variant = parse_tokenizer(json.dumps(state, ensure_ascii=False), self._files.origin)
        variant.encode_special_tokens = True
        return variant

    def encode(self, text: str, allowed_special: Iterable[str] | Literal["all"] = ()) -> list[int]:
        return self._encoder(allowed_special).encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """``encode`` for many texts at once, on the library's threads."""
        batch = getattr(self._plain, "encode_batch_fast", self._plain.encode_batch)
        return [encoding.ids for encoding in batch(texts, add_special_tokens=False)]

    def decode(self, ids: Iterable[int]) -> str:
        ids = [int(i) for i in ids]
        bad = next((i for i in ids if not 0 <= i < self._vocab_size), None)
        if bad is not None:  # the library would skip it silently
            raise DataError(f"token id {bad} is outside the 'hf' vocabulary "
                            f"(0..{self._vocab_size - 1})")
        return self._plain.decode(ids, skip_special_tokens=False)

    def save(self, directory: str | Path) -> None:
        """Hugging Face's files unchanged under ``hf_`` names, then our state file last."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        sources = {HF_TOKENIZER: self._files.tokenizer, HF_CONFIG: self._files.config,
                   HF_TEMPLATE: self._files.template}
        saved = {}
        for hf_name, data in sources.items():
            if data is not None:
                write_atomic(directory / SAVED_AS[hf_name], data)
                saved[hf_name] = SAVED_AS[hf_name]
        write_state(directory, {"name": self.name, "format_version": FORMAT_VERSION,
                                "params": self.Params().model_dump(), "files": saved,
                                "vocab_size": self._vocab_size, "special_tokens": self._specials})

    @classmethod
    def load(cls, directory: str | Path) -> HFTokenizer:
        directory = Path(directory)
        state = read_state(directory, cls.name)
        if not isinstance(state, dict) or state.get("name") != cls.name:
            raise DataError(f"{directory / 'tokenizer.json'} does not hold an 'hf' tokenizer")
        if state.get("format_version") != FORMAT_VERSION:
            raise DataError(f"{directory}: 'hf' tokenizer format_version "
                            f"{state.get('format_version')!r}; this llmbricks reads "
                            f"{FORMAT_VERSION} (upgrade llmbricks?)")
        listed = state.get("files")
        if not isinstance(listed, dict) or HF_TOKENIZER not in listed:
            raise DataError(f"{directory / 'tokenizer.json'} lists no {SAVED_AS[HF_TOKENIZER]}")
        data: dict[str, bytes | None] = {}
        for hf_name, saved_name in SAVED_AS.items():
            file = directory / saved_name
            if hf_name in listed and not file.is_file():
                raise DataError(f"{directory} lacks {saved_name}, which its tokenizer.json lists")
            data[hf_name] = _read(file) if hf_name in listed else None
        origin = str(directory / SAVED_AS[HF_TOKENIZER])
        tok = cls(cls.Params(), HFFiles(data[HF_TOKENIZER] or b"", data[HF_CONFIG],
                                        data[HF_TEMPLATE], origin=origin))
        if tok.vocab_size != state.get("vocab_size") or tok.special_tokens != state.get("special_tokens"):
            raise DataError(f"{directory}: {SAVED_AS[HF_TOKENIZER]} does not match tokenizer.json "
                            "(vocabulary size or special token ids differ)")
        return tok


def _require_path(params: HFTokenizer.Params) -> str:
    if params.path is None:
        raise ConfigError("tokenizer 'hf' needs 'path': a folder holding a Hugging Face "
                          "tokenizer.json, or the file itself (e.g. {name: hf, path: models/llama})")
    return params.path
