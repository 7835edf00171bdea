"""The SMS spam collection: the book's chapter-6 classification data."""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

from llmbricks.core.errors import InputError
from llmbricks.plugins.data import corpora, textio
from llmbricks.plugins.data.named import NamedFileParams, NamedFileSource

_HINT = "the file is not UTF-8 text; check the `path` param"


class SmsSpamSource(NamedFileSource):
    """The UCI SMS Spam Collection: 5,574 text messages labeled ham or spam (CC BY 4.0).

    Yields ``(text, label)`` with label ``"ham"`` or ``"spam"``, in file order (4,827 ham, 747
    spam). The file is tab-separated ``label<TAB>text`` with no header and no quoting: messages
    contain quote characters, so it is split at the first tab, never parsed as CSV. The canonical
    download is UCI's zip; the ``SMSSpamCollection`` member is extracted and verified.
    """

    name = "sms_spam"
    records = "labeled"
    remote = corpora.SMS_SPAM
    labels: ClassVar[tuple[str, ...]] = ("ham", "spam")

    class Params(NamedFileParams):
        """Where to find SMSSpamCollection."""

    def __iter__(self) -> Iterator[tuple[str, str]]:
        path = self.resolve()
        for lineno, line in enumerate(textio.iter_lines(path, "utf-8", "strict", _HINT), start=1):
            row = line.rstrip("\n").removesuffix("\r")
            if not row:
                continue
            label, tab, text = row.partition("\t")
            if not tab:
                raise InputError(f"{path}, line {lineno}: expected 'label<TAB>text' but the row has "
                                f"no tab: {row[:60]!r}")
            if label not in self.labels:
                raise InputError(f"{path}, line {lineno}: label {label[:30]!r} is not 'ham' or "
                                "'spam' (rows are 'label<TAB>text')")
            yield text, label
