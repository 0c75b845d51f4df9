"""No stage outside an environment's folder imports a concrete environment (issue 14's rule).

Every module of ``kalm/`` outside ``kalm/envs/``, every page and ``app.py`` reaches environments
through the interface (``kalm.envs.get_env``). Allowed: the compatibility aliases that *are*
CLEVR-Robot's modules under their historical paths, and module ``__getattr__`` functions that
serve CLEVR's historical names on first use.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CONCRETE = ("kalm.envs.clevr", "kalm.envs.clevr_model", "kalm.envs.metaworld", "kalm.render",
            "kalm.goals", "kalm.policy.expert")
ALIASES = {"kalm/render.py", "kalm/policy/expert.py", "kalm/policy/__init__.py",
           "kalm/llm/metrics.py", "kalm/goals/__init__.py"}


def _stage_files() -> list[Path]:
    files = [p for p in (REPO / "kalm").rglob("*.py") if "envs" not in p.relative_to(REPO / "kalm").parts]
    return sorted(files) + sorted((REPO / "pages").glob("*.py")) + [REPO / "app.py"]


def _imports(tree: ast.AST) -> list[str]:
    names: list[str] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.FunctionDef) and node.name == "__getattr__":
            return  # a lazy server of historical names
        if isinstance(node, ast.Import):
            names.extend(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
            names.extend(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "import_module" \
                and node.args and isinstance(node.args[0], ast.Constant):
            names.append(str(node.args[0].value))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return names


def test_no_stage_imports_a_concrete_environment():
    bad = []
    for path in _stage_files():
        rel = path.relative_to(REPO).as_posix()
        if rel in ALIASES:
            continue
        for name in _imports(ast.parse(path.read_text(), rel)):
            if any(name == c or name.startswith(c + ".") for c in CONCRETE):
                bad.append(f"{rel}: {name}")
    assert not bad, bad


def test_the_aliases_are_the_same_modules():
    code = ("import kalm.goals.spec, kalm.envs.clevr.goals.spec, kalm.llm.metrics, kalm.envs.clevr.metrics,"
            " kalm.render, kalm.envs.clevr.render;"
            "print(kalm.goals.spec is kalm.envs.clevr.goals.spec,"
            " kalm.llm.metrics is kalm.envs.clevr.metrics, kalm.render is kalm.envs.clevr.render)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                         check=True).stdout
    assert out.split() == ["True", "True", "True"]


def test_stages_import_no_environment_at_import_time():
    """Importing the stages loads no concrete environment (they find one when asked)."""
    mods = ("kalm.cli", "kalm.commands", "kalm.evaluate", "kalm.llm.train", "kalm.llm.generate",
            "kalm.imagine.generate", "kalm.imagine.validity", "kalm.imagine.render", "kalm.rl.train",
            "kalm.data.collect")
    code = (f"import sys, {', '.join(mods)}; "
            "print([m for m in sys.modules if m.startswith(('kalm.envs.clevr', 'kalm.envs.metaworld'))])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                         check=True).stdout
    assert out.strip() == "[]", out
