"""The README describes the project by itself and its commands work as written
(issue 13): every command line in it parses with the real parser (`--home` before
the command), it points to nothing outside the repository, its pictures exist, and
exit status 1 means the same in it and in the guides."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from custodian.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _command_lines() -> list[str]:
    lines = []
    for block in re.findall(r"```sh\n(.*?)```", README, re.S):
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            if "|" in line:  # pg_dump app | custodian ...
                line = line.split("|", 1)[1].strip()
            if line.startswith("custodian "):
                lines.append(line)
    return lines


@pytest.mark.parametrize("line", _command_lines())
def test_every_readme_command_parses(line: str) -> None:
    argv = shlex.split(line)[1:]
    args = build_parser(argv).parse_args(argv)  # a usage error would exit 2 here
    assert args is not None


def test_the_demo_command_names_its_home_first() -> None:
    assert "custodian --home /tmp/demo demo" in README
    assert not re.search(r"custodian demo --home", README)
    assert len(_command_lines()) >= 25


def test_the_readme_points_to_nothing_outside_the_repository() -> None:
    assert "../" not in README and "shared/DESIGN" not in README
    for target in re.findall(r"\]\(([^)#]+)\)", README):
        if not target.startswith("http"):
            assert (ROOT / target).exists(), target


def test_the_readme_shows_the_tui_from_snapshot_tests() -> None:
    pictures = re.findall(r"!\[[^]]*\]\(([^)]+\.svg)\)", README)
    assert len(pictures) == 2
    for p in pictures:
        assert p.startswith("tests/ui/__snapshots__/test_readme_screenshots/")
        assert (ROOT / p).read_text(encoding="utf-8").startswith("<svg")


def test_exit_status_1_means_the_same_everywhere() -> None:
    words = "refused by a rule"
    assert re.search(r"1 refused by a rule \(.*?\) or an operating-system error", README, re.S)
    for guide in ("operator-guide.md", "custodian-guide.md"):
        text = (ROOT / "docs" / guide).read_text(encoding="utf-8")
        (row,) = [ln for ln in text.splitlines() if ln.startswith("| 1 |")]
        assert words in row and "operating-system error" in row, guide
