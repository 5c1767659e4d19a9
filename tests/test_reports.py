"""Report files: a rerun replaces the generated text and keeps the notes written around it."""

import logging

from nrt.reports import BEGIN, END, generated_text, write_report


def test_a_rerun_keeps_the_notes_around_the_generated_text(tmp_path):
    path = tmp_path / "out" / "README.md"
    write_report(path, "# Grid\n\n| a | 1 |\n")
    assert path.read_text() == f"{BEGIN}\n# Grid\n\n| a | 1 |\n{END}\n"
    path.write_text("Predictions first.\n\n" + path.read_text() + "\n## What it shows\n\nNotes.\n")
    write_report(path, "# Grid\n\n| a | 2 |")
    assert path.read_text() == (f"Predictions first.\n\n{BEGIN}\n# Grid\n\n| a | 2 |\n{END}\n"
                                "\n## What it shows\n\nNotes.\n")
    assert generated_text(path) == "# Grid\n\n| a | 2 |\n"


def test_a_file_without_markers_is_kept_below_the_new_text(tmp_path, caplog):
    path = tmp_path / "README.md"
    path.write_text("# Old tables\n\nHand-written analysis.\n")
    with caplog.at_level(logging.WARNING, logger="nrt"):
        write_report(path, "# New tables")
    assert path.read_text() == f"{BEGIN}\n# New tables\n{END}\n\n# Old tables\n\nHand-written analysis.\n"
    assert "no generated-text markers" in caplog.text
    assert generated_text(tmp_path / "README.md") == "# New tables\n"
    plain = tmp_path / "plain.md"
    plain.write_text("# Title\n\nbody\n")
    assert generated_text(plain) == "# Title\n\nbody\n"
