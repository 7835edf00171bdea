"""The embedded default corpus: Python's own documentation, shipped with every CPython."""

from __future__ import annotations

import sys
from collections.abc import Iterator

from llmbricks.core.component import ParamsModel
from llmbricks.core.errors import DataError
from llmbricks.core.interfaces import DataSource


def _topics() -> dict[str, str]:
    try:
        from pydoc_data.topics import topics
    except ImportError:  # some distributions split pydoc_data into a separate package
        raise DataError("this Python lacks pydoc_data (its documentation topics); install the "
                        "full standard library or use another data source") from None
    return topics


class PythonDocsSource(DataSource):
    """Python's documentation text (pydoc_data.topics): a corpus that needs no file or download.

    The topics are taken in key order and joined by a blank line, so the corpus is the same on
    every run with the same Python version (about 0.5 MB of English prose and code).
    """

    name = "python_docs"
    records = "text"

    class Params(ParamsModel):
        """No parameters: the text is the documentation of the running Python."""

    def __iter__(self) -> Iterator[str]:
        topics = _topics()
        for i, key in enumerate(sorted(topics)):
            yield ("\n\n" if i else "") + topics[key]

    def describe(self) -> str:
        return f"pydoc_data.topics of Python {sys.version.split()[0]}"
