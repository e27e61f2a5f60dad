"""Every digest the study's caches are keyed by: bytes, JSON values, files, folders, and code.

Code is hashed by *scope*: :func:`code_digest` of a module covers that module and every ``studylib`` module it
imports, directly or through others, including imports inside functions and under ``TYPE_CHECKING``. A cache
keyed by the code that produces it is then invalidated by a change there and by nothing else: editing
``plotting.py`` does not rebuild a cohort, editing ``data/simulate.py`` does.

Examples
--------
>>> from studylib.hashing import code_scope
>>> "studylib.plotting" in code_scope("studylib.data.build")
False
"""

from __future__ import annotations

import ast
import hashlib
import json
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from .storage import atomic_write_text

__all__ = [
    "PACKAGE",
    "code_digest",
    "code_scope",
    "file_manifest",
    "file_sha256",
    "folder_listing_digest",
    "manifest_changes",
    "module_file",
    "sha256_bytes",
    "sha256_json",
    "source_imports",
    "studylib_imports",
    "studylib_modules",
]

PACKAGE = "studylib"
_ROOT = Path(__file__).resolve().parent


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_json(value: Any) -> str:
    """Hex SHA-256 of ``value`` as canonical JSON (sorted keys; paths and other objects as strings)."""
    return sha256_bytes(json.dumps(value, sort_keys=True, default=str).encode())


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def folder_listing_digest(folder: str | Path) -> str:
    """Digest of the names, sizes and modification times of the files under ``folder`` (``"absent"`` if none)."""
    folder = Path(folder)
    if not folder.is_dir():
        return "absent"
    entries = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        stat = path.stat()
        entries.append((path.relative_to(folder).as_posix(), stat.st_size, stat.st_mtime_ns))
    return sha256_json([str(folder), entries])


def file_manifest(files: Mapping[str, Path], cache: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """Size and content hash of each input file (``name -> {"size", "sha256"}``); a folder is recorded as one.

    Content hashes are reused from ``cache`` (a JSON file this function keeps) for files whose location, size and
    modification time are unchanged since they were hashed, so an unchanged input costs one ``stat`` per file; a file whose
    modification time changed is hashed again, so a copy that only touched modification times gives the same
    manifest. The manifest holds no times: its digest changes only when a name, a size or a content does.
    """
    cache = Path(cache) if cache is not None else None
    try:
        previous = json.loads(cache.read_text()) if cache is not None and cache.is_file() else {}
    except json.JSONDecodeError:
        previous = {}
    manifest, records = {}, {}
    for name in sorted(files):
        path = Path(files[name])
        if path.is_dir():
            manifest[name] = {"size": None, "sha256": "folder"}
            continue
        stat = path.stat()
        old = previous.get(name, {})
        where = str(path.resolve())
        if old.get("path") == where and old.get("size") == stat.st_size and old.get("mtime_ns") == stat.st_mtime_ns:
            sha = old["sha256"]
        else:
            sha = file_sha256(path)
        manifest[name] = {"size": stat.st_size, "sha256": sha}
        records[name] = {**manifest[name], "mtime_ns": stat.st_mtime_ns, "path": where}
    if cache is not None and records != previous:
        atomic_write_text(cache, json.dumps(records, indent=0, sort_keys=True))
    return manifest


def manifest_changes(old: Mapping[str, Any], new: Mapping[str, Any], *, shown: int = 3) -> str:
    """What differs between two :func:`file_manifest` results, in words (e.g. ``1 added (105/), 2 changed (...)``)."""
    parts = []
    for label, names in (("added", sorted(set(new) - set(old))), ("removed", sorted(set(old) - set(new))),
                         ("changed", sorted(n for n in set(old) & set(new) if old[n] != new[n]))):
        if names:
            more = f", ... {len(names) - shown} more" if len(names) > shown else ""
            parts.append(f"{len(names)} {label} ({', '.join(names[:shown])}{more})")
    return "; ".join(parts) if parts else "no file changed"


# --------------------------------------------------------------------------- code

def studylib_modules() -> list[str]:
    """Dotted names of every module of the package (packages by their ``__init__``), sorted."""
    names = []
    for path in sorted(_ROOT.rglob("*.py")):
        parts = path.relative_to(_ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names.append(".".join((PACKAGE, *parts)))
    return names


def module_file(name: str) -> Path:
    """The source file of a ``studylib`` module or package."""
    parts = name.split(".")
    if parts[0] != PACKAGE:
        raise ValueError(f"{name!r} is not a {PACKAGE} module")
    base = _ROOT.joinpath(*parts[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    raise ModuleNotFoundError(f"no module {name} in {_ROOT}")


def _is_module(name: str) -> bool:
    try:
        module_file(name)
    except (ValueError, ModuleNotFoundError):
        return False
    return True


def source_imports(source: str, importer: str | None = None, *, is_package: bool = False) -> set[str]:
    """``studylib`` modules that Python ``source`` imports anywhere: at the top, inside functions, or under
    ``TYPE_CHECKING``. ``importer`` (the source's dotted module name) resolves relative imports.

    ``from pkg import name`` counts ``pkg.name`` when that is a module, else ``pkg``.
    """
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == PACKAGE}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                if importer is None:
                    continue
                parts = importer.split(".")
                keep = len(parts) - node.level + (1 if is_package else 0)
                base = ".".join(parts[:keep] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if base.split(".")[0] != PACKAGE:
                continue
            for alias in node.names:
                child = f"{base}.{alias.name}"
                found.add(child if _is_module(child) else base)
    return {name for name in found if _is_module(name)}


@lru_cache(maxsize=None)
def _imports_of(name: str, mtime_ns: int) -> frozenset[str]:
    path = module_file(name)
    return frozenset(source_imports(path.read_text(), name, is_package=path.name == "__init__.py") - {name})


def studylib_imports(name: str) -> set[str]:
    """The ``studylib`` modules that module ``name`` imports itself (see :func:`source_imports`)."""
    return set(_imports_of(name, module_file(name).stat().st_mtime_ns))


def code_scope(*names: str) -> list[str]:
    """``names`` and every ``studylib`` module they import, transitively; sorted."""
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(studylib_imports(name))
    return sorted(seen)


#: Modules whose whole effect is the parameter values they validate, which every cache key hashes itself: editing
#: a description in the schema must not retrain a model.
VALUES_ONLY = frozenset({f"{PACKAGE}.params"})


def _read_source(path: Path) -> bytes:
    """The code of a module without its comments and docstrings (they do not change what it computes)."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                node.body = node.body[1:] or [ast.Pass()]
    return ast.unparse(tree).encode()


def code_digest(*names: str, extra: Iterable[str] = ()) -> str:
    """Digest of the code of :func:`code_scope` of ``names`` (each module's package path and its source without
    comments and docstrings; :data:`VALUES_ONLY` modules left out), and of ``extra`` strings (e.g. library versions
    that decide a result)."""
    digest = hashlib.sha256()
    for name in code_scope(*names):
        if name in VALUES_ONLY:
            continue
        path = module_file(name)
        digest.update(path.relative_to(_ROOT).as_posix().encode() + b"\0")
        digest.update(_read_source(path) + b"\0")
    for item in extra:
        digest.update(str(item).encode() + b"\0")
    return digest.hexdigest()
