"""The README's configuration reference is the one the code generates."""

from __future__ import annotations

from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_quick_start_is_the_two_make_commands() -> None:
    text = README.read_text()
    quick = text[text.index("## Quick start") :]
    block = quick[quick.index("```bash") + 7 : quick.index("```", quick.index("```bash") + 7)]
    commands = [line.split("#")[0].strip() for line in block.strip().splitlines()]
    assert commands == ["make demo", "make test"]
