"""Built-in tokenizers: char, the book's regex, trainable byte-level BPE, tiktoken, and hf."""

from llmbricks.core.hookspecs import hookimpl


@hookimpl
def llmbricks_components():
    from llmbricks.plugins.tokenizers.bpe import BPETokenizer
    from llmbricks.plugins.tokenizers.char import CharTokenizer
    from llmbricks.plugins.tokenizers.hf import HFTokenizer
    from llmbricks.plugins.tokenizers.regex import RegexTokenizer
    from llmbricks.plugins.tokenizers.tiktoken import TiktokenTokenizer

    return [CharTokenizer, RegexTokenizer, BPETokenizer, TiktokenTokenizer, HFTokenizer]
