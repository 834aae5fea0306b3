"""A stage's code version, derived from the code it actually runs.

The version hashes the stage's own module and every first-party module it imports, transitively
(module-level and function-level imports alike, plus the ``__init__`` of each package on the way,
which Python runs on import). First-party means a package folder in the project root, the folder
holding ``dag/``; third-party packages are pinned by the install, and the engine's own package
(``dag``) is left out: how stages are scheduled does not change what they compute.

Each file counts as :func:`code_text`, its syntax tree without docstrings, so editing a comment, a
docstring or the layout keeps every cached artifact, and any code edit in a module the stage imports
changes its key (a hand-written module list missed ``dataset`` for ``sample``: a stale artifact).
Files are resolved on disk, never imported, so a copy of the project (``root=``) can be hashed.

A module that only declares configuration, whose resolved values already enter every key through
the stage's config sections, can say so with a top-level ``__dag_values_only__ = True``: its imports
are still followed, but its own code does not count (adding a field to one section of the config
module otherwise re-keyed every stage of a run, ingest included, though no stage's values changed).
"""

from __future__ import annotations

import ast
import functools
import hashlib
import inspect
import sys
import textwrap
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from dag.spec import StageSpec

PROJECT_ROOT = Path(__file__).resolve().parents[1]
ENGINE_PACKAGE = __name__.split(".")[0]


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


def code_text(source: str) -> str:
    """What a code version hashes of Python `source`: its syntax tree without docstrings (the text
    itself where it does not parse)."""
    try:
        return ast.dump(_strip_docstrings(ast.parse(textwrap.dedent(source))))
    except SyntaxError:
        return source


def _imported_names(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    """Dotted names a module's imports may load: ``import a.b`` -> a.b; ``from a import b`` -> a, a.b
    (``b`` may be a submodule); relative imports resolved against ``module``."""
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = module.split(".")
                base = parts if is_package else parts[:-1]
                base = base[: len(base) - (node.level - 1)]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            out.add(name)
            out.update(f"{name}.{alias.name}" for alias in node.names if alias.name != "*")
    return out


VALUES_ONLY = "__dag_values_only__"


def _values_only(tree: ast.Module) -> bool:
    """Whether the module sets ``__dag_values_only__ = True`` at top level."""
    return any(isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and node.value.value is True
               and any(isinstance(t, ast.Name) and t.id == VALUES_ONLY for t in node.targets) for node in tree.body)


@functools.lru_cache(maxsize=4096)
def _parse(path: Path, mtime_ns: int, size: int, module: str) -> tuple[bytes, frozenset[str]]:
    """(digest of the file's code text, or empty for a values-only module; names it imports); cached
    per file version."""
    text = path.read_text(encoding="utf-8")
    is_package = path.name == "__init__.py"
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return hashlib.sha256(text.encode()).digest(), frozenset()
    imports = frozenset(_imported_names(tree, module, is_package))
    if _values_only(tree):
        return b"", imports
    return hashlib.sha256(code_text(text).encode()).digest(), imports


def module_file(name: str, root: Path) -> Path | None:
    """The source file of first-party module `name` under `root` (None for third-party or missing)."""
    parts = name.split(".")
    if not parts[0] or parts[0] == ENGINE_PACKAGE or not (root / parts[0] / "__init__.py").is_file():
        return None
    base = root.joinpath(*parts)
    for f in (base / "__init__.py", base.with_suffix(".py")):
        if f.is_file():
            return f
    return None


def _module_name(path: Path, root: Path) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def module_closure(start: Iterable[Path], root: Path) -> list[Path]:
    """`start` files and every first-party module file they import, transitively, with the package
    ``__init__`` files on the way (sorted)."""
    seen: set[Path] = set()
    todo = list(start)
    while todo:
        f = todo.pop()
        if f in seen:
            continue
        seen.add(f)
        try:
            name = _module_name(f, root)
        except ValueError:  # a module outside the project (a plugin's stage table): its imports only
            name = f.stem
        st = f.stat()
        _, imports = _parse(f, st.st_mtime_ns, st.st_size, name)
        for imp in imports:
            parts = imp.split(".")
            for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__ too
                g = module_file(".".join(parts[:i]), root)
                if g is not None and g not in seen:
                    todo.append(g)
    return sorted(seen)


def _start_file(fn: Callable[..., Any], root: Path) -> Path | None:
    """The file defining `fn`: under `root` when the module is first-party there, else its own file."""
    module = getattr(inspect.unwrap(fn), "__module__", None) or ""
    f = module_file(module, root)
    if f is not None:
        return f
    if module.split(".")[0] == ENGINE_PACKAGE:
        return None
    path = getattr(sys.modules.get(module), "__file__", None)
    return Path(path).resolve() if path else None


def code_hash(spec: StageSpec, root: Path | None = None) -> str:
    """Code version of a stage (16 hex): its name and version number, and the code text of every
    file in the :func:`module_closure` of the modules defining its functions."""
    root = (root or PROJECT_ROOT).resolve()
    h = hashlib.sha256(f"{spec.name}:{spec.version}".encode())
    starts = {f for f in (_start_file(fn, root) for fn in spec.functions()) if f is not None}
    for f in module_closure(starts, root):
        try:
            rel = f.relative_to(root).as_posix()
            name = _module_name(f, root)
        except ValueError:
            rel, name = f.name, f.stem
        st = f.stat()
        digest, _ = _parse(f, st.st_mtime_ns, st.st_size, name)
        h.update(rel.encode() + b"\0" + digest)
    return h.hexdigest()[:16]
