"""Every relative link and image of the Markdown pages (README.md, BENCHMARKS.md, CHANGELOG.md, docs/**/*.md)
points at a file git tracks, and every #anchor on a Markdown page at one of its headings (GitHub's heading
ids: lower case, punctuation but '-' and '_' dropped, spaces as '-', '-1', '-2' for repeats). Links with a
scheme (https:, mailto:) are not followed. Code blocks and inline code are not links."""

import posixpath
import re
import subprocess

import pytest

from conftest import ROOT


def tracked_files() -> set[str]:
    listed = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)
    if listed.returncode != 0:
        pytest.skip("not a git checkout: tracked files unknown", allow_module_level=True)
    return set(listed.stdout.splitlines())


TRACKED = tracked_files()
PAGES = sorted(p for p in TRACKED if p in ("README.md", "BENCHMARKS.md", "CHANGELOG.md")
               or (p.startswith("docs/") and p.endswith(".md")))

FENCE = re.compile(r"^ {0,3}(```|~~~).*?^ {0,3}\1[^\n]*$", re.S | re.M)
INLINE_CODE = re.compile(r"(`+)(?!`).+?(?<!`)\1(?!`)", re.S)
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$", re.M)
HEADING = re.compile(r"^ {0,3}#{1,6}\s+(.*?)\s*#*\s*$", re.M)


def prose(text: str) -> str:
    """The page without its code: fenced blocks and inline code spans blanked."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def link_targets(text: str) -> list[str]:
    body = prose(text)
    return INLINE_LINK.findall(body) + REFERENCE_LINK.findall(body)


def anchors(text: str) -> set[str]:
    """GitHub's ids of the page's headings."""
    seen: dict[str, int] = {}
    ids = set()
    for heading in HEADING.findall(FENCE.sub("", text)):
        heading = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading: its text
        slug = re.sub(r"[^\w\- ]", "", heading.replace("`", "").lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        ids.add(slug if count == 0 else f"{slug}-{count}")
    return ids


def broken_links(page: str, text: str, tracked: set[str], read=lambda path: (ROOT / path).read_text()) -> list[str]:
    """The links of ``text`` (the page at repository path ``page``) that do not resolve, each with why."""
    broken = []
    for target in link_targets(text):
        if not target or re.match(r"[a-zA-Z][a-zA-Z0-9+.-]*:", target):  # https:, mailto:, ...
            continue
        path, _, anchor = target.partition("#")
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(page), path)) if path else page
        if resolved not in tracked:
            broken.append(f"{target}: {resolved} is not a tracked file")
        elif anchor and resolved.endswith(".md"):
            if anchor not in anchors(text if resolved == page else read(resolved)):
                broken.append(f"{target}: no heading #{anchor} in {resolved}")
    return broken


def test_the_pages_are_found_and_hold_links():
    assert {"README.md", "BENCHMARKS.md", "CHANGELOG.md", "docs/results.md"} <= set(PAGES)
    assert len(link_targets((ROOT / "README.md").read_text())) >= 10


@pytest.mark.parametrize("page", PAGES)
def test_every_relative_link_of_the_page_resolves(page):
    assert broken_links(page, (ROOT / page).read_text(), TRACKED) == []


def test_the_check_finds_a_missing_file_a_missing_heading_and_ignores_code():
    """The checker itself, on a page written here: what it must report and what it must leave alone."""
    page = "docs/example.md"
    text = "\n".join([
        "# A page",
        "## The `same` heading",
        "## The same heading",
        "[ok](../README.md) ![ok](results.png) [ok](#a-page) [ok](#the-same-heading-1) [web](https://example.org/x)",
        "[gone](missing.md) ![gone](../gone.png) [bad anchor](#nowhere) [bad anchor](other.md#nowhere)",
        "`[not a link](missing.md)`",
        "```",
        "[not a link](missing.md)",
        "```",
        "[ref]: ../LICENSE",
    ])
    tracked = {"README.md", "docs/results.png", "docs/example.md", "docs/other.md", "LICENSE"}
    found = broken_links(page, text, tracked, read=lambda path: "# Other\n")
    assert found == ["missing.md: docs/missing.md is not a tracked file",
                     "../gone.png: gone.png is not a tracked file",
                     "#nowhere: no heading #nowhere in docs/example.md",
                     "other.md#nowhere: no heading #nowhere in docs/other.md"]
    assert broken_links(page, "[ref]: ../LICENSE.txt", tracked) == ["../LICENSE.txt: LICENSE.txt is not a tracked file"]
