"""Report files that experiments rewrite and people annotate: the generated part is kept between two markers,
so a rerun (a resumed grid, more seeds) replaces its tables and leaves the notes written around them."""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger("nrt")

BEGIN = "<!-- generated: each run of the experiment rewrites the text up to the end marker; write notes outside -->"
END = "<!-- end of generated text -->"


def write_report(path: Path, text: str) -> None:
    """Put ``text`` between the markers of ``path``, keeping everything outside them. A file without markers
    (written by hand, or before markers existed) is kept whole below the new generated text, with a warning."""
    block = f"{BEGIN}\n{text.rstrip()}\n{END}\n"
    old = path.read_text() if path.is_file() else ""
    if BEGIN in old and END in old:
        before, rest = old.split(BEGIN, 1)
        new = before + block + rest.split(END, 1)[1].removeprefix("\n")
    elif old:
        log.warning("%s has no generated-text markers: the new report goes on top and the old text is kept below "
                    "it; delete what is stale", path)
        new = f"{block}\n{old}"
    else:
        new = block
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(new)


def generated_text(path: Path) -> str:
    """The generated part of ``path`` (the whole file where it has no markers)."""
    text = path.read_text()
    if BEGIN in text and END in text:
        return text.split(BEGIN, 1)[1].split(END, 1)[0].strip("\n") + "\n"
    return text
