"""The documentation a newcomer walks: a short README, and every link and section reference leading somewhere.

Links are checked the way GitHub renders them: a relative path must exist, and a `#fragment` must be the
slug of a heading in the target page. References to a page's section from code and tests
(`docs/store.md, "Bad input"`) must name a heading that exists.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from search_helpers import REPO

README = REPO / "README.md"
PAGES = sorted([README, REPO / "results" / "README.md", *(REPO / "docs").glob("*.md")])
MAX_README_LINES = 150
FIRST_SCREEN_LINES = 25
# Pages written on other branches and linked ahead of their merge; remove a name once its page exists.
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$")
SECTION_REFERENCE = re.compile(r"((?:docs/)?[\w.-]+\.md|README),? \"([^\"]+)\"")
SOURCE_DIRS = ("scrfd_search", "tests", "tools", "benchmarks", "search_spaces")


def _prose(path: Path) -> list[str]:
    """The page's lines outside fenced code blocks."""
    lines, fenced = [], False
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    """Every heading anchor of a page, numbered as GitHub numbers repeated headings."""
    seen: dict[str, int] = {}
    anchors = set()
    for line in _prose(path):
        match = HEADING.match(line)
        if match:
            slug = _slug(match.group(1))
            anchors.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
            seen[slug] = seen.get(slug, 0) + 1
    return anchors


def _links() -> list[tuple[Path, str]]:
    """(page, target) for every relative link or image of the documentation."""
    found = []
    for page in PAGES:
        for line in _prose(page):
            found += [(page, t) for t in LINK.findall(line) if not re.match(r"[a-z]+:", t)]
    return found


def _name(path: Path) -> str:
    """A path as the repository names it."""
    return path.relative_to(REPO).as_posix()


def test_readme_is_short_with_the_two_commands_on_the_first_screen() -> None:
    lines = README.read_text().splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines; move detail into docs/"
    first_screen = "\n".join(lines[:FIRST_SCREEN_LINES])
    assert "make demo" in first_screen and "make test" in first_screen
    assert "make test-fast" in README.read_text()


def test_ci_runs_the_readme_test_command() -> None:
    assert "make test" in (REPO / ".ci" / "run").read_text()


@pytest.mark.parametrize("link", _links(), ids=lambda link: f"{_name(link[0])}->{link[1]}")
def test_every_relative_link_leads_to_a_file_and_heading(link: tuple[Path, str]) -> None:
    page, target = link
    path_part, _, fragment = target.partition("#")
    path = (page.parent / path_part).resolve() if path_part else page
    assert path.exists(), f"{_name(page)}: link to {target}: no such file"
    if fragment:
        assert fragment in _anchors(path), f"{_name(page)}: link to {target}: {_name(path)} has no such heading"


def _section_references() -> list[tuple[str, str, str]]:
    """(source file, page, heading) for every `page, "Heading"` reference in code, tests and spaces."""
    found = []
    for folder in SOURCE_DIRS:
        for path in sorted((REPO / folder).rglob("*")):
            if path.suffix in {".py", ".yaml", ".sh"}:
                text = path.read_text()
                found += [(_name(path), page, heading) for page, heading in SECTION_REFERENCE.findall(text)]
    return found


def test_code_points_at_documentation_sections() -> None:
    assert any(page == "docs/development.md" for _, page, _ in _section_references())


@pytest.mark.parametrize("ref", _section_references(), ids=lambda ref: f"{ref[0]}->{ref[1]}")
def test_every_section_reference_names_an_existing_heading(ref: tuple[str, str, str]) -> None:
    source, page, heading = ref
    path = REPO / ("README.md" if page == "README" else page)
    assert path.exists(), f"{source}: refers to {page}, which does not exist"
    assert _slug(heading) in _anchors(path), f'{source}: refers to {page}, "{heading}": no such heading'
