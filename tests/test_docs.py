"""The documentation holds together: every link and anchor in README.md and docs/ resolves, every reference
from the code to a doc section names one that exists, every documented `scratchdet ...` command parses with
the CLI's own parser (and every `python -m scratchdet.X` and `make X` names a module or target that exists),
and docs/cli.md is what the parsers give. Each check is shown failing on planted mistakes in tmp files."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import re
import shlex
from pathlib import Path

import pytest

from scratchdet import docs
from scratchdet.cli import COMMANDS, build_parser

ROOT = Path(__file__).resolve().parents[1]
SKIPPED_DIRS = {".venv", ".git", "runs", ".cache", "build", "node_modules", "__pycache__", ".pytest_cache",
                ".ruff_cache", ".mypy_cache"}
SOURCE_SUFFIXES = {".py", ".yaml", ".yml", ".sh", ".cpp", ".toml", ".cfg", ".txt"}
# other projects' files that our code cites by their own path (onnx-tensorrt's operator table and changelog)
EXTERNAL_DOCS = {"docs/operators.md", "docs/Changelog.md"}

# top-level folders whose paths the docs name; a path under runs/ or a bundle is an output, not a file here
REPO_FOLDERS = {"models", "train", "export", "runtime", "benchmarks", "scratchdet", "tests", "docs", "requirements",
                ".github"}
PATH_SUFFIXES = {".py", ".pyi", ".yaml", ".yml", ".md", ".txt", ".cpp", ".c", ".h", ".sh", ".toml", ".png", ".json"}
FENCE = re.compile(r"^(```|~~~)")
LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
INLINE_CODE = re.compile(r"(`+)(.+?)\1")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
HTML_ANCHOR = re.compile(r"<a\s+(?:id|name)=\"([^\"]+)\"")
DOC_PATH = re.compile(r"(?<![\w/.-])((?:README\.md|CHANGELOG\.md|docs/[\w./-]+?\.md)(?:#[\w-]+)?)")
ISSUE = re.compile(r"\bissues?\s+#?\d", re.IGNORECASE)
QUOTED_SECTION = re.compile(r"(README(?:\.md)?|docs/[\w./-]+?\.md),? (?:section )?\"([^\"]+)\"")


def markdown_files(root: Path) -> list[Path]:
    """README.md, CHANGELOG.md and every .md under docs/."""
    found = [root / name for name in ("README.md", "CHANGELOG.md") if (root / name).exists()]
    return found + sorted((root / "docs").rglob("*.md")) if (root / "docs").is_dir() else found


def prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks."""
    lines, fenced = [], False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line.strip()):
            fenced = not fenced
        elif not fenced:
            lines.append((number, line))
    return lines


def code_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) of bash/sh/console/unlabelled fenced blocks, continuation lines joined."""
    lines: list[tuple[int, str]] = []
    fenced, shell, pending, start = False, False, "", 0
    for number, line in enumerate(text.splitlines(), 1):
        mark = FENCE.match(line.strip())
        if mark:
            fenced = not fenced
            shell = fenced and line.strip()[3:].strip() in ("", "bash", "sh", "shell", "console")
            continue
        if not (fenced and shell):
            continue
        pending, start = (pending + " " + line.strip(), start) if pending else (line.strip(), number)
        if pending.endswith("\\"):
            pending = pending[:-1].rstrip()
            continue
        lines.append((start, pending))
        pending = ""
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading anchors on its text
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every anchor a Markdown file defines: its headings (duplicates numbered as GitHub does) and <a id>."""
    seen: dict[str, int] = {}
    found = set()
    for _, line in prose_lines(path.read_text()):
        found.update(HTML_ANCHOR.findall(line))
        heading = HEADING.match(line)
        if heading:
            base = slug(heading.group(2))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


def headings(path: Path) -> list[str]:
    return [match.group(2) for _, line in prose_lines(path.read_text()) if (match := HEADING.match(line))]


def broken_links(root: Path) -> list[str]:
    """Every relative link or anchor in the Markdown files that points at nothing, as `file:line: why`."""
    problems = []
    for page in markdown_files(root):
        for number, line in prose_lines(page.read_text()):
            for target in LINK.findall(INLINE_CODE.sub("", line)):
                if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                    continue
                file_part, _, anchor = target.partition("#")
                linked = (page.parent / file_part).resolve() if file_part else page
                where = f"{page.relative_to(root)}:{number}"
                if not linked.exists():
                    problems.append(f"{where}: link to {target}: no such file")
                elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
                    problems.append(f"{where}: link to {target}: no heading gives #{anchor} in {linked.name}")
    return problems


def missing_paths(root: Path) -> list[str]:
    """Every repository path the Markdown files name in inline code (`export/nms_graph.py`) that does not exist:
    a moved or renamed file leaves no stale path in the docs (CHANGELOG.md, being history, may name old ones)."""
    problems = []
    for page in markdown_files(root):
        if page.name == "CHANGELOG.md":
            continue
        for number, line in prose_lines(page.read_text()):
            for span in INLINE_CODE.findall(line):
                for word in span[1].split():
                    path = word.strip("`'\",;:()").split("#")[0]
                    named = path.endswith("/") or Path(path).suffix in PATH_SUFFIXES
                    if named and path.split("/")[0] in REPO_FOLDERS and "/" in path.rstrip("/") \
                            and not (root / path).exists():
                        problems.append(f"{page.relative_to(root)}:{number}: {path}: no such file or folder")
    return problems


def source_files(root: Path) -> list[Path]:
    found = []
    for path in root.rglob("*"):
        if SKIPPED_DIRS.intersection(path.relative_to(root).parts) or not path.is_file():
            continue
        if path.suffix in SOURCE_SUFFIXES or path.name == "Makefile":
            found.append(path)
    return sorted(found)


def broken_doc_references(root: Path) -> list[str]:
    """Every reference from code, configs and scripts to a doc page or section that does not exist:
    `docs/page.md#anchor` (file and anchor must exist) and `README "Section"` (a heading must start with it)."""
    problems = []
    for path in source_files(root):
        if path == Path(__file__).resolve():  # this file plants broken references on purpose
            continue
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            where = f"{path.relative_to(root)}:{number}"
            for reference in DOC_PATH.findall(line):
                file_part, _, anchor = reference.partition("#")
                if file_part in EXTERNAL_DOCS:
                    continue
                if not (root / file_part).exists():
                    problems.append(f"{where}: {reference}: no such file")
                elif anchor and anchor not in anchors(root / file_part):
                    problems.append(f"{where}: {reference}: no heading gives #{anchor} in {file_part}")
            for page, section in QUOTED_SECTION.findall(line):
                if page in EXTERNAL_DOCS:
                    continue
                page_path = root / ("README.md" if page.startswith("README") else page)
                if not page_path.exists() or not any(h.strip("`*").startswith(section) for h in headings(page_path)):
                    problems.append(f"{where}: {page} \"{section}\": no such section")
    return problems


def issue_numbers(root: Path) -> list[str]:
    """Every line of the docs, code, configs or tests that names an issue by number: history belongs in
    CHANGELOG.md, told by what changed, and the product describes what is true now."""
    problems = []
    for path in markdown_files(root) + source_files(root):
        if path == Path(__file__).resolve():  # this file plants issue numbers on purpose
            continue
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if ISSUE.search(line):
                problems.append(f"{path.relative_to(root)}:{number}: {line.strip()}")
    return problems


def command_words(command: str) -> list[str]:
    """A documented command as argv: placeholders resolved (`a|b` -> a, `[...]` and `...` dropped)."""
    command = re.sub(r"\s#.*$", "", command)  # a trailing comment
    command = re.sub(r"\[[^\[\]]*\]", "", re.sub(r"\[[^\[\]]*\]", "", command))  # optional parts, one nesting
    words = []
    for word in shlex.split(command):
        if word in ("...", "…"):
            continue
        words.append(word.split("|")[0] if "|" in word and not word.startswith(("|", "'")) else word)
    return words


def parse_problem(argv: list[str]) -> str | None:
    """Why the `scratchdet` parser refuses argv (its own message), or None when it parses."""
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            build_parser(argv).parse_args(argv)
    except SystemExit as exit_:
        if exit_.code not in (0, None):
            return stderr.getvalue().strip().splitlines()[-1] if stderr.getvalue().strip() else f"exit {exit_.code}"
    return None


def inline_problem(argv: list[str]) -> str | None:
    """An inline `scratchdet CMD --opt ...` mention: CMD must exist and every --option must be one of its own
    (`scratchdet` alone and its own options, `scratchdet --version`, are fine)."""
    parser = build_parser(argv)
    if not argv or argv[0].startswith("-"):
        unknown = [word for word in argv if word not in parser._option_string_actions]
        return f"unknown option(s) {', '.join(unknown)}" if unknown else None
    if argv[0] not in COMMANDS:
        return f"no command {argv[0]!r}"
    command = next(a for a in parser._actions if a.dest == "command").choices[argv[0]]  # type: ignore[index]
    options = {s for action in command._actions for s in action.option_strings}
    for action in command._actions:  # a subcommand's options (`data convert --to`)
        if getattr(action, "choices", None) and isinstance(action.choices, dict):
            for child in action.choices.values():
                options.update(s for a in child._actions for s in a.option_strings)
    unknown = [word.split("=")[0] for word in argv[1:] if word.startswith("--") and word.split("=")[0] not in options]
    return f"unknown option(s) {', '.join(unknown)}" if unknown else None


def make_targets(root: Path) -> set[str]:
    makefile = root / "Makefile"
    text = makefile.read_text() if makefile.exists() else ""
    return set(re.findall(r"^([\w.-]+)\s*:(?!=)", text, re.M))


def shell_problem(words: list[str], root: Path, inline: bool) -> str | None:
    """Why a documented shell command names something that does not exist, or None."""
    while words and re.match(r"^\w+=", words[0]):  # VAR=value prefixes
        words = words[1:]
    if not words:
        return None
    if words[0] in ("scratchdet", ".venv/bin/scratchdet"):
        return inline_problem(words[1:]) if inline else parse_problem(words[1:])
    if "-m" in words[:-1] and words[0].split("/")[-1] in ("python", "python3", "torchrun"):
        module = words[words.index("-m") + 1]
        if module == "scratchdet":
            argv = words[words.index("-m") + 2:]
            return inline_problem(argv) if inline else parse_problem(argv)
        if module.startswith("scratchdet.") and importlib.util.find_spec(module) is None:
            return f"no module {module}"
    if words[0] == "make" and len(words) > 1 and "-C" not in words:
        missing = [w for w in words[1:] if "=" not in w and not w.startswith("-") and w not in make_targets(root)]
        return f"no make target(s) {', '.join(missing)} in Makefile" if missing else None
    return None


def broken_commands(root: Path) -> list[str]:
    """Every documented command that does not parse: fenced shell lines in full, inline `scratchdet ...`
    spans by command and option names (they are often partial)."""
    problems = []
    for page in markdown_files(root):
        text = page.read_text()
        documented = [(n, line, False) for n, line in code_lines(text)]
        documented += [(n, span[1], True) for n, line in prose_lines(text) for span in INLINE_CODE.findall(line)]
        for number, command, inline in documented:
            if not re.match(r"(\S*/)?(scratchdet|python3?|torchrun|make)\b", command):
                continue
            try:
                words = command_words(command)
            except ValueError as error:  # unbalanced quotes
                problems.append(f"{page.relative_to(root)}:{number}: {command}: {error}")
                continue
            problem = shell_problem(words, root, inline)
            if problem:
                problems.append(f"{page.relative_to(root)}:{number}: `{command}`: {problem}")
    return problems


def test_the_tree_has_no_broken_link_or_anchor():
    assert broken_links(ROOT) == []


def test_code_refers_only_to_doc_sections_that_exist():
    assert broken_doc_references(ROOT) == []


def test_every_documented_command_parses():
    assert broken_commands(ROOT) == []


def test_every_repository_path_the_docs_name_exists():
    assert missing_paths(ROOT) == []


def test_no_issue_numbers_in_docs_code_or_tests():
    assert issue_numbers(ROOT) == []


def test_cli_reference_is_what_the_parsers_give():
    assert docs.CLI_MD.read_text() == docs.render(), "docs/cli.md is stale: run `make docs` and commit it"


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "guide.md").write_text("# Guide\n\n## Step one\n\nText.\n")
    (tmp_path / "Makefile").write_text("demo:\n\techo\n")
    return tmp_path


def test_a_planted_broken_link_and_anchor_fail(tree: Path):
    (tree / "README.md").write_text(
        "# Title\n\n[fine](docs/guide.md#step-one) [gone](docs/missing.md) [bad anchor](docs/guide.md#step-two)\n"
        "[here](#title) [not here](#nowhere) `[in code](docs/missing.md)`\n\n```\n[fenced](docs/missing.md)\n```\n")
    assert broken_links(tree) == [
        "README.md:3: link to docs/missing.md: no such file",
        "README.md:3: link to docs/guide.md#step-two: no heading gives #step-two in guide.md",
        "README.md:4: link to #nowhere: no heading gives #nowhere in README.md",
    ]


def test_a_planted_stale_path_fails(tree: Path):
    (tree / "models" / "inference").mkdir(parents=True)
    (tree / "models" / "boxes.py").write_text("")
    (tree / "README.md").write_text(
        "# Title\n\n`models/boxes.py` `models/detections.py` `runs/x/best.pt` `fold_bn.py` `train/x.jpg`\n"
        "`models/inference/` `models/gone/`\n")
    assert missing_paths(tree) == ["README.md:3: models/detections.py: no such file or folder",
                                   "README.md:4: models/gone/: no such file or folder"]


def test_a_code_comment_naming_a_missing_section_fails(tree: Path):
    (tree / "README.md").write_text("# Title\n\n## Tests\n")
    (tree / "mod.py").write_text(
        '# see docs/guide.md#step-one and README "Tests"\n'
        '# see docs/guide.md#step-two, README "OpenVINO", docs/gone.md and onnx-tensorrt docs/operators.md\n')
    assert broken_doc_references(tree) == [
        "mod.py:2: docs/guide.md#step-two: no heading gives #step-two in docs/guide.md",
        "mod.py:2: docs/gone.md: no such file",
        'mod.py:2: README "OpenVINO": no such section',
    ]


def test_a_documented_command_the_cli_does_not_parse_fails(tree: Path):
    (tree / "docs" / "guide.md").write_text(
        "# Guide\n\n```bash\n"
        "scratchdet info --config tiny    # fine\n"
        "scratchdet quantize --model m.onnx --data DATA --target ort|tensorrt [--full-range]\n"
        "scratchdet export --model m.pt --no-such-option\n"
        "scratchdet predict IMG --model m.onnx \\\n    --conf 2\n"
        "scratchdet tarin --config tiny\n"
        "python -m scratchdet.benchmarks.no_such_study x\n"
        "make demo\nmake no-such-target CONFIG=tiny\n"
        "```\n\n`scratchdet export --deploy-conf` and `scratchdet check --enforce-speed` and `make demo`\n")
    problems = broken_commands(tree)
    assert [p.split(": `")[0] for p in problems] == ["docs/guide.md:6", "docs/guide.md:7", "docs/guide.md:9",
                                                     "docs/guide.md:10", "docs/guide.md:12", "docs/guide.md:15"]
    assert "unrecognized arguments: --no-such-option" in problems[0]
    assert "--conf: 2.0 is outside [0, 1]" in problems[1]
    assert "invalid choice: 'tarin'" in problems[2]
    assert problems[3].endswith("no module scratchdet.benchmarks.no_such_study")
    assert problems[4].endswith("no make target(s) no-such-target in Makefile")
    assert problems[5].endswith("unknown option(s) --enforce-speed")


def test_a_stale_cli_reference_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys):
    stale = tmp_path / "cli.md"
    stale.write_text(docs.render().replace("--config CONFIG", "--config NAME", 1))
    monkeypatch.setattr(docs, "CLI_MD", stale)
    assert docs.main(["--check"]) == 1
    assert "is stale: run `make docs`" in capsys.readouterr().err
    assert docs.main([]) == 0 and docs.main(["--check"]) == 0


def test_a_planted_issue_number_fails(tree: Path):
    (tree / "docs" / "guide.md").write_text("# Guide\n\nAs issue 12 asked, the gate fails closed.\n")
    (tree / "mod.py").write_text("x = 1  # the layout of Issue #21\ny = 2  # data.issues['boxes clipped'] is fine\n")
    assert issue_numbers(tree) == ["docs/guide.md:3: As issue 12 asked, the gate fails closed.",
                                   "mod.py:1: x = 1  # the layout of Issue #21"]
