"""The README's configuration reference is the one the code generates."""

from __future__ import annotations

from pathlib import Path

from job.config import reference_rows

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_configuration_reference_matches_the_typed_configuration() -> None:
    text = README.read_text()
    start = text.index("<!-- config-reference:start -->")
    end = text.index("<!-- config-reference:end -->")
    table = text[start:end].splitlines()[1:]
    rows = [line for line in table if line.startswith("| `")]
    documented = [tuple(c.strip().strip("`") for c in line.strip("|").split(" | ")) for line in rows]
    assert documented == [(k, t, d) for k, t, d in reference_rows()]


def test_readme_quick_start_is_the_two_make_commands() -> None:
    text = README.read_text()
    quick = text[text.index("## Quick start") :]
    block = quick[quick.index("```bash") + 7 : quick.index("```", quick.index("```bash") + 7)]
    commands = [line.split("#")[0].strip() for line in block.strip().splitlines()]
    assert commands == ["make demo", "make test"]
