"""Package layering: the domain packages import only ``shared`` (never each other), and ``shared`` imports none
of them. Checked on every module's source with an AST scan, so imports inside functions count too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOMAINS = ("connectomics", "phenotypic", "rldiag")
PACKAGES = ("shared", *DOMAINS)


def imported_packages(source: str, module: str) -> set[str]:
    """Top-level packages named by every ``import`` / ``from ... import`` in ``source`` (relative ones resolved
    against ``module``, the dotted name of the file), wherever the statement sits."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: stays inside the module's own top-level package unless it climbs out
                parts = module.split(".")
                found.add(parts[0] if node.level < len(parts) else "<outside>")
            elif node.module:
                found.add(node.module.split(".")[0])
    return found


def test_scanner_sees_lazy_and_relative_imports():
    src = "import os\ndef f():\n    from rldiag.envs import GAMES\n    import phenotypic.cli as c\nfrom . import x\n"
    assert imported_packages(src, "connectomics.io") == {"os", "rldiag", "phenotypic", "connectomics"}


@pytest.mark.parametrize("package", PACKAGES)
def test_layering(package):
    allowed = {package} if package == "shared" else {package, "shared"}
    violations = []
    files = sorted((REPO / package).rglob("*.py"))
    assert files, f"no modules found under {package}/"
    for path in files:
        module = ".".join(path.relative_to(REPO).with_suffix("").parts)
        wrong = (imported_packages(path.read_text(), module) & set(PACKAGES)) - allowed
        violations += [f"{path.relative_to(REPO)} imports {name}" for name in sorted(wrong)]
    assert not violations, "\n".join(violations)
