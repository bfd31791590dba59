"""The README says what the code does: its options table is the config's own, and it stays short."""

from __future__ import annotations

import re
from pathlib import Path

from asdfd.cli import build_parser
from asdfd.config import DistillConfig, options_table

ROOT = Path(__file__).parents[1]


def test_readme_options_table_is_the_configs_own():
    readme = (ROOT / "README.md").read_text()
    found = re.search(r"<!-- options:start[^\n]*-->\n(.*?)\n<!-- options:end -->", readme, re.S)
    assert found, "README.md lost its options table markers"
    assert found.group(1) == options_table(), "README options table is stale: paste asdfd.config.options_table() between the markers"


def test_every_option_has_help_and_the_main_ones_are_few():
    import dataclasses

    fields = dataclasses.fields(DistillConfig)
    assert all(f.metadata.get("help") for f in fields)
    assert 10 <= sum(bool(f.metadata.get("main")) for f in fields) <= 20


def test_distill_help_stays_small_and_the_readme_short():
    distill = build_parser().commands["distill"]
    options = [a for a in distill._actions if a.option_strings and a.dest != "help"]
    assert len(options) <= 45, len(options)
    readme = (ROOT / "README.md").read_text()
    assert len(readme) <= 12_000
    assert "| **lm-text** (the default) |" in "\n".join(readme.splitlines()[:80])  # the headline table, in the first screen
