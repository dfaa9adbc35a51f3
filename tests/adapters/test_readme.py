"""The README's configuration reference is the one the code generates."""

from __future__ import annotations

from tests import ROOT

README = ROOT / "README.md"


def test_readme_quick_start_is_the_two_make_commands() -> None:
    text = README.read_text()
    quick = text[text.index("## Quick start") :]
    block = quick[quick.index("```bash") + 7 : quick.index("```", quick.index("```bash") + 7)]
    commands = [line.split("#")[0].strip() for line in block.strip().splitlines()]
    assert commands == ["make demo", "make test"]


def test_the_readme_is_short_and_keeps_no_diary() -> None:
    """About 300 lines for users: details live in docs/, history in git and dated results."""
    text = README.read_text()
    assert len(text.splitlines()) <= 300
    assert " session " not in text.lower()  # ("Session mode" is Flink's)
    for link in ("docs/architecture.md", "docs/detection.md", "docs/operations.md", "docs/performance.md"):
        assert link in text and (README.parent / link).is_file()
