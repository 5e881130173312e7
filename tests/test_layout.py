"""The package layout's rules (docs/design.md), checked on the source.

- No import cycle among the project's modules, imports inside functions
  included.
- The device side (`vqvae_tf.codec`, `vqvae_tf.utils` but its replica ops)
  never imports training, data, model or export code, at any level, and
  imports no TensorFlow at module level, directly or through another module.
- No module of the library is longer than `MAX_LINES`.
"""

import ast
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MAX_LINES = 450
TENSORFLOW = ("tensorflow", "keras", "tensorflow_probability", "tf_keras", "tf2onnx")
# The device side and what it must not reach.
DEVICE = ("vqvae_tf.codec", "vqvae_tf.utils")
DEVICE_EXCEPTIONS = (
    "vqvae_tf.codec.__main__",  # the command line joins the packaging commands of the training side
    "vqvae_tf.utils.distributed_ops",  # replica-aware TensorFlow ops, for the layers
)
NOT_FROM_DEVICE = (
    "vqvae_tf.training",
    "vqvae_tf.data",
    "vqvae_tf.models",
    "vqvae_tf.quantizers",
    "vqvae_tf.export",
    "export",
)


def _modules():
    """{dotted name: path} of every module of the library and of the root `export/`."""
    found = {}
    for root in ("vqvae_tf", "export"):
        for path in sorted((REPO / root).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


MODULES = _modules()


def _imports(name, path):
    """[(imported project module or external top-level name, at module level?)] of one module."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    top_level = set(map(id, tree.body))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
        else:
            continue
        module_level = id(node) in top_level or _in_module_level_block(tree, node)
        for target in targets:
            while target not in MODULES and "." in target and target.split(".")[0] in ("vqvae_tf", "export"):
                target = target.rpartition(".")[0]
            found.append((target if target in MODULES else target.split(".")[0], module_level))
    return found


def _in_module_level_block(tree, node):
    """Imports under a module-level `if`/`try` run at import time too."""
    for statement in tree.body:
        if isinstance(statement, (ast.If, ast.Try)) and any(child is node for child in ast.walk(statement)):
            return True
    return False


IMPORTS = {name: _imports(name, path) for name, path in MODULES.items()}


def _parents(name):
    """Packages whose `__init__` runs before `name` (excluding `name`)."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts)) if ".".join(parts[:i]) in MODULES]


def test_no_import_cycle():
    graph = {name: sorted({t for t, _ in IMPORTS[name] if t in MODULES and t != name}) for name in MODULES}
    # Tarjan's strongly connected components; any component of two or more is a cycle.
    index, low, stack, on_stack, cycles, counter = {}, {}, [], set(), [], [0]
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    assert not cycles, f"import cycles: {cycles}"


def _is_device(name):
    return name.startswith(DEVICE) and name not in DEVICE_EXCEPTIONS


def test_device_side_never_imports_training_code():
    offences = [
        (name, target)
        for name in MODULES
        if _is_device(name)
        for target, _ in IMPORTS[name]
        if target.startswith(NOT_FROM_DEVICE)
    ]
    assert not offences, offences


def _module_level_closure(name):
    """Everything importing `name` runs at import time: parents' __init__ and module-level imports."""
    seen, todo = set(), [name]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        if current in MODULES:
            todo.extend(_parents(current))
            todo.extend(t for t, module_level in IMPORTS[current] if module_level)
    return seen


@pytest.mark.parametrize("name", [n for n in MODULES if _is_device(n)])
def test_device_module_imports_no_tensorflow_at_module_level(name):
    closure = _module_level_closure(name)
    assert not closure & set(TENSORFLOW), sorted(closure & set(TENSORFLOW))


def test_rules_see_the_modules_they_guard():
    # The checks above would pass vacuously on a wrong path or an empty parse.
    assert {"vqvae_tf.codec.api", "vqvae_tf.codec.bitstream", "vqvae_tf.training.loop"} <= set(MODULES)
    assert ("vqvae_tf.codec.model", True) in IMPORTS["vqvae_tf.codec.api"]
    assert any(t == "tensorflow" for t, _ in IMPORTS["vqvae_tf.training.loop"])


def test_no_module_is_too_long():
    long = {
        str(path.relative_to(REPO)): n
        for path in MODULES.values()
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines: {long}"
