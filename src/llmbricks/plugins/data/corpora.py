"""The named files the data sources know: canonical URL, size and sha256 (see SOURCES.md).

Kept as data so a new corpus is one entry here plus a small source class.
"""

from __future__ import annotations

from llmbricks.core.store.datafiles import RemoteFile

_BOOK = ("https://raw.githubusercontent.com/rasbt/LLMs-from-scratch/main")

TINYSHAKESPEARE = RemoteFile(
    filename="tinyshakespeare.txt",
    url="https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
    sha256="86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
    size=1_115_394,
)

THE_VERDICT = RemoteFile(
    filename="the-verdict.txt",
    url=f"{_BOOK}/ch02/01_main-chapter-code/the-verdict.txt",
    sha256="b41e41a68f0398a3154ae69e2e4c0e2694e17fe0d66730536837f1b01935b31f",
    size=20_479,
)

SMS_SPAM = RemoteFile(
    filename="SMSSpamCollection",
    url="https://archive.ics.uci.edu/static/public/228/sms+spam+collection.zip",
    sha256="7d039a24a6083ed9ef0f806ebad56bbb976e3aeb8de05669173bfdc4996c239d",
    size=477_907,
    member="SMSSpamCollection",
)

INSTRUCTION_DATA = RemoteFile(
    filename="instruction-data.json",
    url=f"{_BOOK}/ch07/01_main-chapter-code/instruction-data.json",
    sha256="7e09a9af353722ca15c18bc580f093f9c39d3178335a75177319cb1e1d163944",
    size=203_524,
)

#: Every named file, by the name of the source that reads it.
KNOWN_FILES: dict[str, RemoteFile] = {
    "tinyshakespeare": TINYSHAKESPEARE,
    "the_verdict": THE_VERDICT,
    "sms_spam": SMS_SPAM,
    "instruction_data": INSTRUCTION_DATA,
}
