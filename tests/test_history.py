"""Docs, recipes and code comments speak of the toolkit, not of how it was developed.

Development history ("session 7", "the previous recipe", "this session", commit hashes) belongs in
CHANGELOG.md and git log. This test greps the user-facing text of the repository for it and fails
listing file:line and the offending text:

- README.md and docs/**/*.md, whole text (URLs removed);
- recipes/**/*.yaml and experiments/** text files, whole text;
- comments and docstrings of distill/**/*.py, scripts/*.py, benchmarks/*.py, experiments/**/*.py.

CHANGELOG.md is not checked; benchmarks/results/ and experiments/results/ (generated records, which may
name commits) are checked for session words only.
"""

import ast
import io
import re
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

WORDS = [
    re.compile(r"\bsessions? \d", re.IGNORECASE),
    re.compile(r"\bsession-\d", re.IGNORECASE),
    re.compile(r"previous recipe", re.IGNORECASE),
    re.compile(r"this session", re.IGNORECASE),
]
# a commit hash in prose: 7-40 lower-case hex characters with at least one digit and one letter
# a-f, standing alone (not part of a longer word, a hex colour "#a1b2c3d", "0x..." or a path)
HEX = re.compile(r"(?<![\w#./-])(?=[0-9a-f]*[0-9])(?=[0-9a-f]*[a-f])[0-9a-f]{7,40}(?![\w/-])")
URL = re.compile(r"\b(?:https?|ftp)://\S+")
# an evaluation row's digest of the weights it scored (distill.engine.checkpoint.weights_fingerprint), not a commit
DIGEST = re.compile(r'"weights": "[0-9a-f]{16,64}"')
TEXT_SUFFIXES = {".md", ".yaml", ".yml", ".txt", ".toml", ".cfg", ".json"}


def hits_in_text(text: str) -> list[tuple[int, str]]:
    """(line number, matched text) for every history word in `text`."""
    found = []
    for n, line in enumerate(text.splitlines(), 1):
        line = DIGEST.sub(" ", URL.sub(" ", line))
        for rx in [*WORDS, HEX]:
            for m in rx.finditer(line):
                found.append((n, m.group(0)))
    return found


def prose_of_python(source: str) -> list[tuple[int, str]]:
    """(first line number, text) of every comment and docstring of a Python source."""
    parts = []
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.COMMENT:
                parts.append((tok.start[0], tok.string))
    except (tokenize.TokenError, SyntaxError):
        pass
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return parts
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                parts.append((body[0].lineno, body[0].value.value))
    return parts


def hits_in_python(source: str) -> list[tuple[int, str]]:
    found = []
    for start, text in prose_of_python(source):
        for n, match in hits_in_text(text):
            found.append((start + n - 1, match))
    return found


def _files(group: str) -> list[Path]:
    if group == "docs":
        return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    if group == "recipes":
        return sorted((ROOT / "recipes").rglob("*.yaml"))
    if group == "distill":
        return sorted((ROOT / "distill").rglob("*.py"))
    if group == "scripts":
        return sorted((ROOT / "scripts").glob("*.py"))
    if group == "benchmarks":
        return sorted((ROOT / "benchmarks").glob("*.py"))
    if group == "experiments":
        exp = ROOT / "experiments"
        return sorted(p for p in exp.rglob("*") if p.is_file()
                      and (p.suffix == ".py" or p.suffix in TEXT_SUFFIXES)) if exp.is_dir() else []
    raise ValueError(group)


def history_hits(group: str) -> list[str]:
    out = []
    for path in _files(group):
        if not path.is_file() or "__pycache__" in path.parts:
            continue
        rel = path.relative_to(ROOT)
        if rel.parts[:2] == ("benchmarks", "results") or rel.name == "CHANGELOG.md":
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        hits = hits_in_python(text) if path.suffix == ".py" else hits_in_text(text)
        lines = text.splitlines()
        for n, match in hits:
            line = lines[n - 1].strip() if 0 < n <= len(lines) else ""
            out.append(f"{rel}:{n}: {match!r}: {line[:160]}")
    return out


@pytest.mark.parametrize("group", ["docs", "recipes", "distill", "scripts", "benchmarks", "experiments"])
def test_no_development_history(group):
    hits = history_hits(group)
    assert not hits, ("development history in user-facing text (move it to CHANGELOG.md):\n"
                      + "\n".join(hits))


def test_generated_results_name_no_sessions():
    """benchmarks/results and experiments/results may record commits, not the sessions that made them."""
    out = []
    for folder in (ROOT / "benchmarks" / "results", ROOT / "experiments" / "results"):
        for path in sorted(folder.rglob("*")):
            if path.is_file() and path.suffix in TEXT_SUFFIXES:
                for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
                    out += [f"{path.relative_to(ROOT)}:{n}: {m.group(0)!r}" for rx in WORDS for m in rx.finditer(line)]
    assert not out, "\n".join(out)


@pytest.mark.parametrize("text", [
    "as in session 7", "Sessions 1-2", "session-8 table", "the previous recipe", "in this session",
    "the fix (commit 03009e8)", "shipped at a5b4634", '"commit": "a7ee44d2c2537712"',
])
def test_detects(text):
    assert hits_in_text(text)


@pytest.mark.parametrize("text", [
    "colour #a1b2c3d", "0x1f2e3d4c", "lr 1e-4, 5.0e-4", "bf16 autocast", "decay 0.9926", "deadbeef",
    "https://github.com/x/y/commit/03009e8a", "runs/a5b4634/pipeline", "12345678 samples", "facade",
    "see recipes/mnist.yaml", '"weights": "a7ee44d2c2537712",',
])
def test_ignores(text):
    assert not hits_in_text(text)


def test_python_prose_only():
    src = 'X = "session 7 a5b4634"\n# fine comment\ndef f():\n    """Docstring: session 3."""\n    return 1\n'
    assert hits_in_python(src) == [(4, "session 3")]
