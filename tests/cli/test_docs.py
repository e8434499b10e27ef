"""The generated documentation blocks are what the code renders: the CLI's usage in docs/cli.md
(from argparse) and the key table in README.md (from config/keys.py). Regenerate both with
``python -m deforum_wan.cli.usage --write`` in the repository root."""
from __future__ import annotations

import re

import pytest
from helpers import ROOT

from deforum_wan.cli import usage
from deforum_wan.cli.main import build_parser


@pytest.mark.parametrize("name", sorted(usage.BLOCKS))
def test_generated_block_matches_the_code(name):
    rel = usage.BLOCKS[name][0]
    held = usage.block_in((ROOT / rel).read_text(encoding="utf-8"), name)
    assert held is not None, f"{rel} lost its {name} markers"
    assert held == usage.rendered(name), (
        f"{rel}'s {name} differs from the code; run `python -m deforum_wan.cli.usage --write`")


def test_usage_block_holds_every_subcommand_and_its_required_arguments():
    block = usage.usage_block()
    commands = usage._subparsers(build_parser())
    assert commands and all(f"usage: python -m deforum_wan {name} " in block for name in commands)
    # a required positional is never shown in brackets (batch parses SETTINGS as "*")
    batch = block[block.index("usage: python -m deforum_wan batch"):]
    batch = batch[:batch.index("\n\n")] if "\n\n" in batch else batch
    assert re.search(r"\s(SETTINGS \[SETTINGS \.\.\.\])\s*$", batch)
    assert max(len(line) for line in block.splitlines()) <= usage.WIDTH


def test_write_rewrites_a_stale_block_and_nothing_else(tmp_path):
    for rel in {r for r, _, _ in usage.BLOCKS.values()}:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text((ROOT / rel).read_text(encoding="utf-8"), encoding="utf-8")
    cli = tmp_path / usage.CLI_DOC
    original = cli.read_text(encoding="utf-8")
    cli.write_text(original.replace(usage.usage_block(), "```\nstale\n```"), encoding="utf-8")
    assert usage.write(tmp_path) == [usage.CLI_DOC]
    assert cli.read_text(encoding="utf-8") == original
    assert usage.write(tmp_path) == []

