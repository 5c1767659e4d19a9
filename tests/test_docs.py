"""The documentation stays true to the code and to itself: the generated config reference matches TrainConfig,
every relative link resolves, the README stays short, and no page speaks of how it was built."""

import re
from pathlib import Path

import pytest

from nrt.config_reference import COMMAND, DOC_PATH, reference_markdown

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "results").rglob("README.md"))]
USER_PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
CODE = re.compile(r"```.*?```|`[^`\n]*`", re.DOTALL)
# What a user-facing page must not say: where or when a figure was made belongs in results/*/README.md.
PROVENANCE = re.compile(r"this (?:\d+-core )?machine|\bissue \d+|\b\d{1,2}:\d{2} UTC|\bcommit [0-9a-f]{7}\b|"
                        r"\bsessions?\b", re.IGNORECASE)


def test_config_reference_matches_the_config():
    assert (ROOT / DOC_PATH).read_text() == reference_markdown(), \
        f"docs/config-reference.md is out of date with nrt.config.TrainConfig: run `{COMMAND}` to regenerate it"


def relative_links(page: Path) -> list[str]:
    """Link targets outside code spans and blocks, without web addresses and pure anchors."""
    text = CODE.sub("", page.read_text())
    return [t for t in LINK.findall(text) if not re.match(r"[a-z]+:|#", t)]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    broken = [t for t in relative_links(page) if not (page.parent / t.split("#")[0]).exists()]
    assert not broken, f"{page.relative_to(ROOT)}: links to missing files: {broken}"


def test_the_link_check_sees_links_and_skips_code(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("[a](x.md) ![b](img/c.png#top) [w](https://e.org) [h](#here) `[d](no.md)`\n```\n[e](no2.md)\n```\n")
    assert relative_links(page) == ["x.md", "img/c.png#top"]


def test_readme_is_at_most_200_lines():
    lines = len((ROOT / "README.md").read_text().splitlines())
    assert lines <= 200, f"README.md has {lines} lines; move detail into docs/ or results/"


@pytest.mark.parametrize("page", USER_PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_user_pages_do_not_speak_of_how_they_were_made(page):
    hits = [m.group(0) for m in PROVENANCE.finditer(page.read_text())]
    assert not hits, f"{page.relative_to(ROOT)}: {hits}: name the hardware, and keep dates, commits and sessions " \
                     "in results/*/README.md"


@pytest.mark.parametrize("text", ["measured on this machine", "on this 2-core machine", "fixed in issue 13",
                                  "at 03:00 UTC", "at commit 6971980", "in a second session"])
def test_the_provenance_check_catches(text):
    assert PROVENANCE.search(text)


def test_every_trl_name_the_config_error_suggests_is_in_the_trl_table():
    """An unknown TRL key points to docs/trl.md; that page's table must map it to the same nrt key."""
    from nrt.config import FIELDS, TRL_NAMES

    table = (ROOT / "docs" / "trl.md").read_text()
    for trl, nrt in TRL_NAMES.items():
        assert nrt in FIELDS
        assert re.search(rf"^\| [^|]*`{trl}`[^|]*\| [^|]*`{nrt}`", table, re.M), (trl, nrt)
