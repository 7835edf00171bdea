"""Built-in tokenizers: char, the book's regex, trainable byte-level BPE, and tiktoken."""

from llmbricks.core.hookspecs import hookimpl


@hookimpl
def llmbricks_components():
    from .bpe import BPETokenizer
    from .char import CharTokenizer
    from .regex import RegexTokenizer
    from .tiktoken import TiktokenTokenizer

    return [CharTokenizer, RegexTokenizer, BPETokenizer, TiktokenTokenizer]
