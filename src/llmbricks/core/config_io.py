"""Reading config files (YAML, TOML, JSON) and parsing override values, with precise errors.

A config file is untrusted input, so reading it is bounded before anything else happens:

- a file above ``MAX_CONFIG_BYTES`` is refused without being parsed;
- nesting deeper than ``MAX_DEPTH`` levels is refused while scanning (JSON, TOML) or composing
  (YAML), before Python's recursion limit can be reached;
- a YAML document whose aliases expand to more than ``MAX_ALIAS_EXPANSION`` values ("billion
  laughs") or refer to themselves is refused before it is constructed;
- a key written twice in one mapping is an error naming the key and both lines, in every format;
- every parser failure names ``file:line:column``.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

#: No real config comes near this; a larger file is refused before it is parsed.
MAX_CONFIG_BYTES = 1 << 20
#: Levels of nested mappings and lists; a real config uses fewer than ten.
MAX_DEPTH = 32
#: Values a YAML document may expand to through its aliases.
MAX_ALIAS_EXPANSION = 100_000
#: Python refuses to convert integers with more digits than this (``sys.int_info``).
_MAX_DIGITS = 4300


class _Refusal(Exception):
    """Raised inside the YAML loader; ``parse_yaml`` turns it into a ``file:line:col`` error."""

    def __init__(self, mark: yaml.Mark | None, message: str) -> None:
        super().__init__(message)
        self.mark = mark
        self.message = message


def _where(source: str, mark: yaml.Mark | None) -> str:
    return f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source


class _Loader(yaml.SafeLoader):
    """SafeLoader with bounds: depth, alias expansion, duplicate keys and oversized numbers.

    It also reads ``1e-3`` as a float (YAML 1.1 wants ``1.0e-3``), as users expect.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._aliases = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            return super().compose_node(parent, index)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _Refusal(self.peek_event().start_mark,
                               f"nested deeper than {MAX_DEPTH} levels; no config needs that many")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def compose_document(self) -> Node:
        node = super().compose_document()
        if self._aliases:
            _check_expansion(node)
        return node

    def construct_mapping(self, node: Node, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, MappingNode):
            _check_duplicate_keys(self, node)
        return super().construct_mapping(node, deep=deep)

    def construct_bounded_int(self, node: ScalarNode) -> int:
        try:
            return super().construct_yaml_int(node)
        except ValueError:
            raise _Refusal(node.start_mark, f"an integer with more than {_MAX_DIGITS} digits") from None


#: ``1e-3`` (no dot) is a float, as YAML 1.2 and every config author read it; PyYAML's YAML 1.1
#: would make it a string.
_EXPONENT_FLOAT = re.compile(r"""^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$""")
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _EXPONENT_FLOAT, list("-+0123456789"))
_Loader.add_constructor("tag:yaml.org,2002:int", _Loader.construct_bounded_int)


def _lines(first: int, second: int) -> str:
    """Where a key was written twice: ``lines 2 and 5``, or ``twice on line 2``."""
    return f"lines {first} and {second}" if first != second else f"twice on line {first}"


def _check_duplicate_keys(loader: _Loader, node: MappingNode) -> None:
    """A key written twice in one mapping (merge keys ``<<`` aside) names both lines."""
    seen: dict[Any, Node] = {}
    for key_node, _ in node.value:
        if not isinstance(key_node, ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node)
        try:
            first = seen.setdefault(key, key_node)
        except TypeError:  # unhashable: the constructor reports it
            continue
        if first is not key_node:
            raise _Refusal(key_node.start_mark, f"duplicate key '{key}' "
                           f"({_lines(first.start_mark.line + 1, key_node.start_mark.line + 1)}); keep one")


def _check_expansion(root: Node) -> None:
    """Refuse aliases that expand past the budget or deeper than ``MAX_DEPTH``, or that loop."""
    sizes: dict[int, tuple[int, int]] = {}
    active: set[int] = set()

    def walk(node: Node) -> tuple[int, int]:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise _Refusal(node.start_mark, "an alias refers to the collection that contains it")
        active.add(key)
        children: list[Node] = []
        if isinstance(node, SequenceNode):
            children = list(node.value)
        elif isinstance(node, MappingNode):
            children = [n for pair in node.value for n in pair]
        size, depth = 1, 0
        for child in children:
            child_size, child_depth = walk(child)
            size += child_size
            depth = max(depth, child_depth)
        depth += 1
        if size > MAX_ALIAS_EXPANSION:
            raise _Refusal(node.start_mark, f"aliases expand to more than {MAX_ALIAS_EXPANSION:,} "
                           "values; write the values out or use fewer aliases")
        if depth > MAX_DEPTH:
            raise _Refusal(node.start_mark, f"aliases nest deeper than {MAX_DEPTH} levels")
        active.discard(key)
        sizes[key] = (size, depth)
        return size, depth

    walk(root)


def parse_yaml(text: str, source: str = "<string>") -> Any:
    """Parse one YAML document with the bounds of ``_Loader``; errors name ``source:line:col``."""
    try:
        loader = _Loader(text)  # the reader refuses control characters here already
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        raise ConfigError(f"{source}:{line}:{column}: malformed YAML: unacceptable character "
                          f"#x{exc.character:04x} (not allowed in YAML text)") from None
    try:
        return loader.get_single_data()
    except _Refusal as exc:
        raise ConfigError(f"{_where(source, exc.mark)}: {exc.message}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        message = " ".join(str(exc.problem or exc.context).split())
        raise ConfigError(f"{_where(source, mark)}: malformed YAML: {message}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: malformed YAML: {' '.join(str(exc).split())}") from None
    finally:
        loader.dispose()


# --- JSON and TOML: a bracket scan first, since their parsers recurse -------------------------


@dataclass
class _Frame:
    """One open ``{`` or ``[`` of a JSON document: its keys and where each was first written."""

    is_object: bool
    path: str
    keys: dict[str, int] = field(default_factory=dict)
    expect_key: bool = True
    last_key: str = ""


_JSON_TOKENS = re.compile(r'"(?:[^"\\\n]|\\.)*"|[{}\[\]:,]|[ \t\r\n]+|[^\s{}\[\]:,"]+')
_TOML_TOKENS = re.compile(r'"""(?:[^\\]|\\.)*?"""|\'\'\'.*?\'\'\'|"(?:[^"\\\n]|\\.)*"|\'[^\'\n]*\'|#[^\n]*'
                          r'|[{}\[\]]|[ \t\r\n]+|[^\s{}\[\]"\'#]+', re.S)


def _tokens(text: str, pattern: re.Pattern[str]) -> Iterator[tuple[str, int, int]]:
    """``(token, line, column)`` until the text ends or stops making sense (the parser says why)."""
    line, line_start, pos = 1, 0, 0
    while pos < len(text):
        match = pattern.match(text, pos)
        if match is None:
            return
        token = match.group()
        yield token, line, pos - line_start + 1
        newlines = token.count("\n")
        if newlines:
            line += newlines
            line_start = pos + token.rindex("\n") + 1
        pos = match.end()


def _too_deep(source: str, line: int, column: int) -> ConfigError:
    return ConfigError(f"{source}:{line}:{column}: nested deeper than {MAX_DEPTH} levels; "
                       "no config needs that many")


def _child_path(parent: _Frame | None) -> str:
    """The dotted path of a container opened inside ``parent`` (list items keep the list's)."""
    if parent is None:
        return ""
    if parent.is_object:
        return f"{parent.path}.{parent.last_key}" if parent.path else parent.last_key
    return parent.path


def _scan_json(text: str, source: str) -> ConfigError | None:
    """Refuse deep nesting now; return the first duplicate key's error for after the parse."""
    stack: list[_Frame] = []
    duplicate: ConfigError | None = None
    for token, line, column in _tokens(text, _JSON_TOKENS):
        top = stack[-1] if stack else None
        if token in "{[":
            path = _child_path(top)
            stack.append(_Frame(token == "{", path))
            if len(stack) > MAX_DEPTH:
                raise _too_deep(source, line, column)
        elif token in "}]":
            if stack:
                stack.pop()
        elif token == "," and top is not None:
            top.expect_key = True
        elif token.startswith('"') and top is not None and top.is_object and top.expect_key:
            top.expect_key = False
            try:
                key = json.loads(token)
            except ValueError:
                key = token[1:-1]
            top.last_key = key
            if key not in top.keys:
                top.keys[key] = line
            elif duplicate is None:
                name = f"{top.path}.{key}" if top.path else key
                duplicate = ConfigError(f"{source}:{line}:{column}: duplicate key '{name}' "
                                        f"({_lines(top.keys[key], line)}); keep one")
    return duplicate


def _scan_toml_depth(text: str, source: str) -> None:
    """TOML's parser recurses into arrays and inline tables: bound their nesting first."""
    depth = 0
    for token, line, column in _tokens(text, _TOML_TOKENS):
        if token in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                raise _too_deep(source, line, column)
        elif token in "]}":
            depth = max(0, depth - 1)


_TOML_KEY = r'(?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|\'[^\']*\')'
_TOML_DOTTED = rf"{_TOML_KEY}(?:\s*\.\s*{_TOML_KEY})*"
_TOML_HEADER = re.compile(rf"^\s*(\[\[?)\s*({_TOML_DOTTED})\s*\]\]?\s*(?:#.*)?$")
_TOML_ASSIGN = re.compile(rf"^\s*({_TOML_DOTTED})\s*=")
_TOML_AT = re.compile(r"^(.*) \(at line (\d+), column (\d+)\)$", re.S)


def _toml_key(text: str) -> tuple[str, ...]:
    parts = re.findall(_TOML_KEY, text)
    return tuple(p[1:-1] if p[:1] in "\"'" else p for p in parts)


def _toml_duplicate(text: str, at_line: int) -> str | None:
    """Name the key (or table) that tomllib found written twice at ``at_line``, with both lines.

    A line-based scan: good enough to name a duplicate tomllib has already found (the file is
    refused either way); multi-line strings are skipped.
    """
    seen: dict[tuple[str, ...], int] = {}
    table: tuple[str, ...] = ()
    in_string: str | None = None
    for number, line in enumerate(text.splitlines(), 1):
        if in_string is not None:
            if line.count(in_string) % 2:
                in_string = None
            continue
        header = _TOML_HEADER.match(line)
        if header:
            key = _toml_key(header.group(2))
            if header.group(1) == "[[":
                table = (*key, f"#{number}")
                continue
            table, full = key, key
        else:
            assign = _TOML_ASSIGN.match(line)
            if not assign:
                continue
            full = (*table, *_toml_key(assign.group(1)))
            rest = line[assign.end():]
            for quote in ('"""', "'''"):
                if rest.count(quote) % 2:
                    in_string = quote
        if full in seen and number == at_line:
            what = "table" if header else "key"
            return f"duplicate {what} '{'.'.join(full)}' ({_lines(seen[full], number)}); keep one"
        seen.setdefault(full, number)
    return None


def _parse_toml(text: str, source: str) -> Any:
    _scan_toml_depth(text, source)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = _TOML_AT.match(str(exc))
        if found:
            message, line, column = found.group(1), int(found.group(2)), int(found.group(3))
        else:  # "(at end of document)": the position after the last character
            message = str(exc).removesuffix(" (at end of document)")
            line = text.count("\n") + 1
            column = len(text) - (text.rfind("\n") + 1) + 1
        message = " ".join(message.split())
        if message.startswith(("Cannot overwrite", "Cannot declare")):
            message = _toml_duplicate(text, line) or message
        elif message.startswith("Duplicate inline table key"):
            key = message.removeprefix("Duplicate inline table key ")
            message = f"duplicate key {key} in one inline table (line {line}); keep one"
        else:
            message = f"malformed TOML: {message}"
        raise ConfigError(f"{source}:{line}:{column}: {message}") from None


def _parse_json(text: str, source: str) -> Any:
    duplicate = _scan_json(text, source)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{source}:{exc.lineno}:{exc.colno}: malformed JSON: {exc.msg}") from None
    if duplicate is not None:
        raise duplicate
    return data


def _long_number(text: str, source: str) -> ConfigError:
    """Python refused an integer's digits: point at the first run of too many digits."""
    match = re.search(rf"[0-9_]{{{_MAX_DIGITS + 1},}}", text)
    if match is None:
        return ConfigError(f"{source}: a number has more than {_MAX_DIGITS} digits")
    line = text.count("\n", 0, match.start()) + 1
    column = match.start() - (text.rfind("\n", 0, match.start()) + 1) + 1
    return ConfigError(f"{source}:{line}:{column}: an integer with more than {_MAX_DIGITS} digits")


def _depth_path(data: Any, limit: int = MAX_DEPTH) -> list[str] | None:
    """The keys down to the first value nested deeper than ``limit``, or ``None``."""
    if not isinstance(data, (dict, list)):
        return None
    if limit == 0:
        return []
    items = data.items() if isinstance(data, dict) else enumerate(data)
    for key, value in items:
        below = _depth_path(value, limit - 1)
        if below is not None:
            return [str(key), *below]
    return None


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Load a config file into a plain dict; the format follows the file's suffix."""
    path = Path(path)
    source = str(path)
    text = _read_text(path)
    suffix = path.suffix.lower()
    if suffix not in {".yaml", ".yml", ".toml", ".json"}:
        raise ConfigError(f"config file '{path}' has an unknown format '{suffix}' "
                          "(use .yaml, .yml, .toml or .json)")
    try:
        if suffix == ".toml":
            data = _parse_toml(text, source)
        elif suffix == ".json":
            data = _parse_json(text, source)
        else:
            data = parse_yaml(text, source)
    except ValueError as exc:  # Python's limit on an integer's digits
        if isinstance(exc, ConfigError):
            raise
        raise _long_number(text, source) from None
    deep = _depth_path(data)
    if deep is not None:
        raise ConfigError(f"{path}: nested deeper than {MAX_DEPTH} levels (at "
                          f"{'.'.join(deep[:4])}...); no config needs that many")
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a mapping of sections (model, data, train, "
                          f"seed), got {type(data).__name__}")
    return data


def _read_text(path: Path) -> str:
    """At most ``MAX_CONFIG_BYTES`` of UTF-8 (a byte-order mark is dropped)."""
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"config file '{path}' does not exist "
                          "(create one with `llmbricks config new > config.yaml`)") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file '{path}': {exc.strerror or exc}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"config file '{path}' is larger than {MAX_CONFIG_BYTES // 1024} KiB; "
                          "no config needs that much (is it the right file?)")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file '{path}' is not UTF-8 text (byte 0x{raw[exc.start]:02x} at "
                          f"offset {exc.start})") from None


class _Dumper(yaml.SafeDumper):
    """SafeDumper that knows the loader's extra float form, so it quotes a string such as
    ``"0E0"`` (a config's name) that would otherwise be read back as the number 0.0."""


_Dumper.add_implicit_resolver("tag:yaml.org,2002:float", _EXPONENT_FLOAT, list("-+0123456789"))


def dump_yaml(data: Any) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True,
                     default_flow_style=False)
