"""Every ``TrainConfig`` key as a Markdown reference: ``python -m nrt.config_reference`` writes
``docs/config-reference.md``.

The page is generated from the dataclass (names, types, defaults and the help text each field carries), so it
cannot fall behind the code unnoticed: ``tests/test_docs.py`` regenerates it and fails when the committed file
differs. Sections follow the ``# --- name ---`` comments that group the fields in ``nrt/config.py``.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any, Literal

from nrt.config import TrainConfig

DOC_PATH = Path("docs") / "config-reference.md"  # from the repository root, where the command runs
COMMAND = "python -m nrt.config_reference"


def type_name(hint: Any) -> str:
    """A type as a user writes the value in YAML: ``int``, ``list of str``, ``str or null``, ``one of a, b``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        return "one of " + ", ".join(str(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join("null" if a is type(None) else type_name(a) for a in args)
    if origin is list:
        return f"list of {type_name(args[0])}"
    return hint.__name__


def sections() -> dict[str, str]:
    """The section of each field, from the ``# --- name ---`` comment above it in the class body."""
    out, current = {}, ""
    for line in inspect.getsource(TrainConfig).splitlines():
        heading = re.match(r"\s*# --- (.+?) -+$", line)
        field = re.match(r"\s{4}(\w+): ", line)
        if heading:
            current = heading.group(1)
        elif field:
            out[field.group(1)] = current
    return out


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def reference_markdown() -> str:
    """The whole page: one table per section, a row per key (name, type, default as YAML/JSON, help)."""
    hints = typing.get_type_hints(TrainConfig)
    section_of = sections()
    lines = [
        "# Configuration reference",
        "",
        f"<!-- Generated from nrt.config.TrainConfig by `{COMMAND}`; edit the help texts there, not this file. -->",
        "",
        "Every key of a training run. Set any of them in a YAML file (`nrt train --config my.yaml`) or on the command",
        "line (`nrt train --config nrt-ws key=value`); a preset only sets what differs from these defaults. Values",
        "are read as YAML: `lr=1e-5`, `lora=true`, `betas=[0.9,0.99]`. How the batch keys fit together:",
        "[configuration.md](configuration.md).",
    ]
    current = None
    for f in dataclasses.fields(TrainConfig):
        section = section_of.get(f.name, "")
        if section != current:
            current = section
            lines += ["", f"## {section}" if section else "## other", "", "| key | type | default | what it does |",
                      "|---|---|---|---|"]
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        lines.append(f"| `{f.name}` | {_cell(type_name(hints[f.name]))} | `{_cell(json.dumps(default))}` | "
                     f"{_cell(f.metadata['help'])} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write the page (to ``docs/config-reference.md`` under the current folder, or to the path given)."""
    argv = sys.argv[1:] if argv is None else argv
    path = Path(argv[0]) if argv else DOC_PATH
    path.write_text(reference_markdown())
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
