"""The import rules of the package layout (docs/architecture.md, issue #17), checked statically.

- Application floors (``plots/``, ``cli/``, ``reproduce/``) sit on top of the library: nothing below
  them imports them; nothing outside ``cli/`` imports ``emgp_md.cli``, the only place argparse is used.
- matplotlib is imported and ``pyplot()`` called only under ``plots/``, and
  ``matplotlib.use`` appears exactly once (:func:`emgp_md.plots.pyplot`).
- ``import emgp_md`` has no heavy side effects: neither matplotlib nor torch is imported.
- The library itself is floors (:data:`LIBRARY_FLOORS`): data, models, pretraining and training,
  calculator, MD/landscapes/analysis, active learning; imports point to the same floor or below.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "emgp_md"

#: Top floors: application code that the library must not import.
APPLICATION = ("emgp_md.plots", "emgp_md.cli", "emgp_md.reproduce")

#: Known exceptions, each (importing module, imported module). Phase B of issue #17 empties it.
ALLOWED_UPWARD_IMPORTS: set[tuple[str, str]] = set()
#: Modules outside the application floors allowed to import matplotlib (phase B: none).
ALLOWED_MATPLOTLIB: set[str] = set()


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _is_application(module: str) -> bool:
    return any(module == top or module.startswith(top + ".") for top in APPLICATION)


def _imports(tree: ast.AST, module: str) -> set[str]:
    """Absolute names of every module imported anywhere in ``tree`` (also inside functions)."""
    found: set[str] = set()
    package = module if module.count(".") == 0 else module.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base]) if base else ".".join(parent)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def _allowed(module: str, imported: str) -> bool:
    return any(module == m and (imported == i or imported.startswith(i + ".")) for m, i in ALLOWED_UPWARD_IMPORTS)


def _modules() -> dict[str, ast.AST]:
    return {_module_name(p): ast.parse(p.read_text(), str(p)) for p in sorted(PACKAGE.rglob("*.py"))}


def test_library_does_not_import_the_application_floors() -> None:
    bad = set()
    for module, tree in _modules().items():
        if _is_application(module):
            continue
        for imported in _imports(tree, module):
            if _is_application(imported) and not _allowed(module, imported):
                bad.add((module, imported))
    assert not bad, f"library modules import plots/cli/reproduce: {sorted(bad)}"


def _within(module: str, top: str) -> bool:
    return module == top or module.startswith(top + ".")


#: Floors of the library, bottom first: a module imports only from its own floor or below.
LIBRARY_FLOORS: tuple[tuple[str, ...], ...] = (
    ("emgp_md", "units", "errors", "atomic", "typed_config", "config", "concurrency", "outputs"),
    ("data",),
    ("models", "pretrained"),
    ("training", "pretrain"),
    ("calculator", "committee"),
    ("md", "relaxation", "landscape", "analysis", "testing"),
    ("learn",),
)


def _floor(module: str) -> int | None:
    """Library floor of an ``emgp_md`` module (None for the application floors and other packages)."""
    if not _within(module, "emgp_md") or _is_application(module):
        return None
    part = module.split(".")[1] if "." in module else "emgp_md"
    return next((i for i, names in enumerate(LIBRARY_FLOORS) if part in names), None)


def test_library_floors_import_downwards() -> None:
    """data → models → pretrain/training → calculator → md/landscape/analysis → learn, never upwards."""
    modules = _modules()
    unplaced = sorted(m for m in modules if not _is_application(m) and _floor(m) is None)
    assert not unplaced, f"library modules on no floor (add them to LIBRARY_FLOORS): {unplaced}"
    bad = set()
    for module, tree in modules.items():
        own = _floor(module)
        if own is None:
            continue
        for imported in _imports(tree, module):
            floor = _floor(imported)
            if floor is not None and floor > own:
                bad.add((module, imported))
    assert not bad, f"library modules import a floor above their own: {sorted(bad)}"


def test_only_the_cli_imports_the_cli_and_argparse() -> None:
    """``emgp_md.cli`` is the top: plots/ and reproduce/ do not import it, and no module outside it parses
    arguments (issue #17: a data module used to define an argparse parser)."""
    bad = set()
    for module, tree in _modules().items():
        if _within(module, "emgp_md.cli"):
            continue
        for imported in _imports(tree, module):
            if _within(imported, "emgp_md.cli") or _within(imported, "argparse"):
                bad.add((module, imported))
    assert not bad, f"modules outside emgp_md.cli import the CLI or argparse: {sorted(bad)}"


def test_cli_is_one_package() -> None:
    """The command line is ``cli/`` (main plus one module per group); the old top-level modules are gone."""
    assert (PACKAGE / "cli" / "__init__.py").is_file() and (PACKAGE / "cli" / "main.py").is_file()
    assert not [p.name for p in PACKAGE.glob("cli*.py")]


def test_allow_list_is_not_stale() -> None:
    """Every allowed exception still exists (remove it from the list once phase B fixes it)."""
    modules = _modules()
    for module, imported in ALLOWED_UPWARD_IMPORTS:
        assert imported in _imports(modules[module], module), f"stale allow-list entry {(module, imported)}"


def _in_plots(module: str) -> bool:
    return module == "emgp_md.plots" or module.startswith("emgp_md.plots.")


def test_matplotlib_only_in_plots() -> None:
    """Every matplotlib import and every ``pyplot()`` call of the package lives in ``plots/`` (the CLI and
    the reproduction reports compute numbers and call a plots function)."""
    bad = set()
    for module, tree in _modules().items():
        if _in_plots(module) or module in ALLOWED_MATPLOTLIB:
            continue
        if any(name == "matplotlib" or name.startswith("matplotlib.") for name in _imports(tree, module)):
            bad.add(module)
        calls = [
            node
            for node in ast.walk(tree)
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) == "pyplot"
        ]
        if calls:
            bad.add(module)
    assert not bad, f"matplotlib used outside plots/: {sorted(bad)}"


def test_matplotlib_use_in_one_place() -> None:
    calls = []
    for module, tree in _modules().items():
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "use"
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "matplotlib"
            ):
                calls.append(module)
    assert calls == ["emgp_md.plots"], f"matplotlib.use called in {calls}"


def test_import_is_free_of_side_effects() -> None:
    code = (
        "import sys, emgp_md\n"
        "heavy = sorted(m for m in ('matplotlib', 'torch', 'ase', 'rdkit') if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=PACKAGE.parent)
    assert out.stdout.strip() == "", f"import emgp_md imports {out.stdout.strip()}"


def test_library_modules_do_not_pull_matplotlib() -> None:
    """Importing the library floors (calculator, MD, analysis, landscapes, training) loads no matplotlib."""
    code = (
        "import sys\n"
        "import emgp_md.calculator, emgp_md.md, emgp_md.analysis, emgp_md.landscape, emgp_md.training.finetune\n"
        "import emgp_md.pretrain.diagnostics, emgp_md.models\n"
        "print('matplotlib' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=PACKAGE.parent)
    assert out.stdout.strip() == "False"
