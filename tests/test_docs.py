"""The documentation against the tree.

The README's layout section names every folder the repository tracks and every folder of the
package, and every path it names exists; every link in README.md and docs/ resolves, anchors
included; every page of docs/ is linked from the README; and no tracked text file holds an
absolute path that exists on one machine only.
"""

from __future__ import annotations

import fnmatch
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
PACKAGE = ROOT / "lib" / "peftlab"
LAYOUT_HEADING = "## Layout"

CODE_SPAN = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"\[(?:[^\[\]]|\[[^\]]*\])*\]\(([^)\s]+)\)")
# A code span that names a path: folders joined by '/' (a trailing '/' for a folder, '*' as a
# glob), or a file name with an extension the repository uses.
PATH_SPAN = re.compile(r"^[\w.-]+(?:/[\w.*-]*)+$|^[\w.-]+\.(?:md|py|toml|ya?ml|ipynb|sh|txt|json|cfg)$")

# Absolute paths that exist on one machine only. Each pattern starts a path only where no word,
# '.', '$', '}', '~', '/' or '-' comes before it, so relative paths ("$WORK/root/lib"), URLs
# ("example.org/work/") and "~/.cache" never match. The names sit in groups, e.g. "(?:work)", so
# that this file does not match its own patterns. System paths a project legitimately names (the
# null device, the shebang's env, documented files under /etc) are not listed.
START = r"(?<![\w.$}~/-])"
MACHINE_PATHS = {
    # a workspace root outside the checkout: what is read from there is missing from a clone
    "workspace folder": re.compile(START + r"/(?:work)/"),
    # a user's home folder on Linux
    "Linux home folder": re.compile(START + r"/(?:home)/[\w.-]+/"),
    # the superuser's home folder
    "root's home folder": re.compile(START + r"/(?:root)/"),
    # a file inside one run's temporary folder ("${TMPDIR:-/tmp}" alone is fine)
    "temporary folder": re.compile(START + r"/(?:tmp)/[\w.-]+/"),
    # a user's home folder on macOS
    "macOS home folder": re.compile(START + r"/(?:Users)/"),
    # a user's home folder on Windows
    "Windows home folder": re.compile(r"\b[A-Za-z]:[\\/]+(?:Users)[\\/]", re.IGNORECASE),
}
DATA_DOCS = (".md",)  # under data/, only the documentation is text to check; the rest is data


def tracked_files() -> list[str]:
    try:
        listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: the tracked files are unknown")
    return [p for p in listed.stdout.decode().split("\0") if p and (ROOT / p).is_file()]


def ignored(path: str) -> bool:
    """Whether git ignores the path (what runs write, such as outputs/; a trailing '/' says it is
    a folder, which a folder that does not exist yet needs to match a folder pattern)."""
    try:
        checked = subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT, capture_output=True)
    except OSError:
        checked = None
    if checked is not None and checked.returncode in (0, 1):
        return checked.returncode == 0
    # not a git checkout: the top-level patterns of .gitignore
    gitignore = ROOT / ".gitignore"
    lines = gitignore.read_text().splitlines() if gitignore.exists() else []
    patterns = [line.strip() for line in lines if line.strip()]
    return any(fnmatch.fnmatch(path, pattern) for pattern in patterns if not pattern.startswith("#"))


def without_code_blocks(text: str) -> str:
    kept, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        kept.append("" if fenced else line)
    return "\n".join(kept)


def layout_section() -> str:
    lines = without_code_blocks(README.read_text()).splitlines()
    assert LAYOUT_HEADING in lines, f"README.md has no '{LAYOUT_HEADING}' section"
    start = lines.index(LAYOUT_HEADING) + 1
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("## ")), len(lines))
    return "\n".join(lines[start:end])


def layout_paths() -> list[str]:
    return [span for span in CODE_SPAN.findall(layout_section()) if PATH_SPAN.match(span)]


def mentioned(folder: str, paths: list[str]) -> bool:
    return any(path == folder or path.startswith(folder) for path in paths)


def test_the_layout_names_every_tracked_top_level_folder():
    folders = sorted({p.split("/")[0] + "/" for p in tracked_files() if "/" in p and not p.startswith(".")})
    paths = layout_paths()
    missing = [folder for folder in folders if not mentioned(folder, paths)]
    assert not missing, f"README.md's layout does not mention these tracked folders: {missing}"


def test_the_layout_names_every_package_folder():
    folders = sorted(
        init.parent.relative_to(ROOT).as_posix() + "/"
        for init in PACKAGE.rglob("__init__.py")
        if init.parent != PACKAGE
    )
    assert folders, f"no package folders under {PACKAGE.relative_to(ROOT)}"
    paths = layout_paths()
    missing = [folder for folder in folders if not mentioned(folder, paths)]
    assert not missing, f"README.md's layout does not mention these package folders: {missing}"


def test_every_path_the_layout_names_exists():
    paths = layout_paths()
    assert len(paths) > 10, f"README.md's layout names too few paths to be one: {paths}"
    missing = [
        path
        for path in paths
        if not (any(ROOT.glob(path.rstrip("/"))) if "*" in path else (ROOT / path).exists()) and not ignored(path)
    ]
    assert not missing, f"README.md's layout names paths that do not exist: {missing}"


def heading_anchors(path: Path) -> set[str]:
    """GitHub's anchors of a Markdown file's headings: lowercase, punctuation dropped, spaces to '-'."""
    anchors = set()
    for line in without_code_blocks(path.read_text()).splitlines():
        heading = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if heading:
            anchors.add(re.sub(r"[^\w\- ]", "", heading.group(1).lower()).replace(" ", "-"))
    return anchors


def markdown_pages() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def broken_links(page: Path) -> list[str]:
    broken = []
    for target in LINK.findall(without_code_blocks(page.read_text())):
        if re.match(r"^[a-z]+:", target):  # https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        linked = (page.parent / file_part).resolve() if file_part else page
        if not linked.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and linked.suffix == ".md" and anchor not in heading_anchors(linked):
            broken.append(f"{target} (no heading #{anchor} in {linked.relative_to(ROOT)})")
    return broken


@pytest.mark.parametrize("page", markdown_pages(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_link_resolves(page):
    broken = broken_links(page)
    assert not broken, f"{page.relative_to(ROOT)}: links that do not resolve: {broken}"


def test_every_docs_page_is_linked_from_the_readme():
    linked = {(ROOT / target.partition("#")[0]).resolve() for target in LINK.findall(README.read_text())}
    unlinked = [page.relative_to(ROOT).as_posix() for page in sorted(DOCS.glob("*.md")) if page.resolve() not in linked]
    assert not unlinked, f"docs pages README.md does not link: {unlinked}"


def machine_paths_in(text: str) -> list[tuple[int, str, str]]:
    """(line number, what, the matched text) for each absolute machine path in the text."""
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        for what, pattern in MACHINE_PATHS.items():
            found += [(number, what, match.group(0)) for match in pattern.finditer(line)]
    return found


def text_of(path: str) -> str | None:
    """The file's text, or None for a binary file or a data file under data/."""
    if path.startswith("data/") and not path.endswith(DATA_DOCS):
        return None
    raw = (ROOT / path).read_bytes()
    if b"\0" in raw[:8192]:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def test_no_tracked_file_holds_an_absolute_machine_path():
    found = [
        f"{path}:{number}: {text!r} ({what})"
        for path in tracked_files()
        if (content := text_of(path)) is not None
        for number, what, text in machine_paths_in(content)
    ]
    assert not found, "absolute paths of one machine (write them relative to the repository):\n" + "\n".join(found)


@pytest.mark.parametrize(
    "line",
    [
        "source: `/" + "work/shared/reference/a.json`",
        "cd /" + "home/someone/project",
        'ls "/' + 'root/.cache/x"',
        "written to /" + "tmp/pytest-of-me/pytest-3/run",
        "open /" + "Users/someone/peftlab/README.md",
        r"copy to C:\\" + r"Users\someone\peftlab",
    ],
)
def test_the_machine_path_patterns_catch_each_kind(line):
    assert machine_paths_in(line), line


@pytest.mark.parametrize(
    "line",
    [
        "#!/usr/bin/env bash",
        "command -v srun >/dev/null",
        "cached in ~/.cache/peftlab/models/",
        'ln -s "$ROOT/$name" "$WORK/root/$name"',
        'WORK="$(mktemp -d "${TMPDIR:-/tmp}/gpu-check.XXXXXX")"',
        "https://example.org/work/home/page",
        "lib/peftlab/run/train.py and data/hf/",
        "scripts/local-slurm.sh writes /etc/slurm/slurm.conf",
    ],
)
def test_the_machine_path_patterns_leave_legitimate_paths_alone(line):
    assert not machine_paths_in(line), machine_paths_in(line)
