"""The examples in README.md and docs/*.md run, and the docs' relative links resolve.

Every ```python block is run, in a fresh namespace, in one subprocess for
all pages, each page in a working directory of its own (the blocks write
`runs/`, `export/`, `photo.vqz`, ...). A block that cannot run in a test is
written as ```text, or preceded by a line `<!-- not run: reason -->`.
"""

import json
import os
import re
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md"] + sorted((REPO / "docs").glob("*.md"))
# Fewer runnable blocks than this means the extraction broke (the test
# would pass without running anything).
MIN_BLOCKS = 15

_FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.M | re.S)
_NOT_RUN = re.compile(r"<!--\s*not run:\s*(.+?)\s*-->\s*$")


def _blocks(path):
    """(runnable python blocks as (line, code), count of blocks marked not run)."""
    text = path.read_text()
    runnable, skipped = [], 0
    for match in _FENCE.finditer(text):
        if match.group(1) != "python":
            continue
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        line = text.count("\n", 0, match.start()) + 1
        if _NOT_RUN.search(before):
            skipped += 1
        else:
            runnable.append((line, match.group(2)))
    return runnable, skipped


# All pages run in one subprocess (one TensorFlow import, not one per page), each page in its own
# working directory with a fresh namespace per block and the global Keras state reset between pages;
# each page's outcome is reported on its own.
_RUNNER = textwrap.dedent(
    """
    import json, os, sys, traceback
    pages = json.loads(sys.stdin.read())
    results = {}
    for page in pages:
        os.chdir(page["cwd"])
        results[page["name"]] = None
        for line, code in page["blocks"]:
            try:
                exec(compile(code, f"{page['name']}:{line}", "exec"), {"__name__": "__docs__"})
            except BaseException:
                results[page["name"]] = f"block at {page['name']}:{line} failed\\n" + traceback.format_exc()
                break
        if "keras" in sys.modules:
            import keras
            keras.mixed_precision.set_global_policy("float32")
            keras.backend.clear_session()
    with open(sys.argv[1], "w") as f:
        json.dump(results, f)
    """
)
RUNNABLE = [p for p in PAGES if _blocks(p)[0]]


def test_enough_blocks_are_run():
    counts = {path.name: _blocks(path) for path in PAGES}
    runnable = sum(len(blocks) for blocks, _ in counts.values())
    skipped = sum(skipped for _, skipped in counts.values())
    assert runnable >= MIN_BLOCKS, f"only {runnable} runnable python blocks found ({skipped} marked not run)"


@pytest.fixture(scope="module")
def example_results(tmp_path_factory):
    """{page name: None if every block ran, else the failing block and its traceback}."""
    root = tmp_path_factory.mktemp("docs_examples")
    pages = []
    for path in RUNNABLE:
        name = path.relative_to(REPO).as_posix()
        cwd = root / name.replace("/", "_")
        cwd.mkdir()
        pages.append({"name": name, "cwd": str(cwd), "blocks": _blocks(path)[0]})
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        TF_CPP_MIN_LOG_LEVEL="2",
        CUDA_VISIBLE_DEVICES="",
    )
    out = root / "results.json"
    result = subprocess.run(
        [sys.executable, "-c", _RUNNER, str(out)],
        input=json.dumps(pages),
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert result.returncode == 0 and out.exists(), result.stderr[-4000:]
    return json.loads(out.read_text())


@pytest.mark.slow
@pytest.mark.parametrize("path", RUNNABLE, ids=lambda p: p.name)
def test_examples_run(path, example_results):
    name = path.relative_to(REPO).as_posix()
    assert name in example_results, sorted(example_results)
    assert example_results[name] is None, example_results[name][-4000:]


def _slug(heading):
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(path):
    text = _FENCE.sub("", path.read_text())
    return {_slug(m.group(1)) for m in re.finditer(r"^#+\s+(.+)$", text, re.M)}


@pytest.mark.parametrize("path", PAGES, ids=lambda p: p.name)
def test_relative_links_resolve(path):
    text = _FENCE.sub("", path.read_text())
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue  # http(s) links are not checked (no network)
        file, _, anchor = target.partition("#")
        linked = (path.parent / file).resolve() if file else path
        if not linked.exists():
            broken.append(target)
        elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked):
            broken.append(target)
    assert not broken, f"{path.name}: broken links {broken}"


_DOTTED = re.compile(r"\bvqvae_tf(?:\.[A-Za-z_]\w*)+")


def _resolves(path):
    """Whether `a.b.c` names a module, or an attribute chain under the longest importable module."""
    import importlib

    parts = path.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for part in parts[i:]:
            if not hasattr(obj, part):
                return False
            obj = getattr(obj, part)
        return True
    return False


def test_every_module_path_in_the_docs_resolves():
    # Moving a module must not leave a page naming its old place.
    pages = PAGES + [REPO / "vqvae_tf" / "pretrained" / "README.md"]
    paths = {match.rstrip(".") for page in pages for match in _DOTTED.findall(page.read_text())}
    assert len(paths) >= 20, sorted(paths)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        unresolved = sorted(p for p in paths if not _resolves(p))
    assert not unresolved, unresolved


def test_readme_stays_short():
    # The README is read to the end by a new user; everything else lives in docs/.
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines; move detail to docs/"
