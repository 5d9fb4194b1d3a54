"""The layout rules the code keeps: no import cycle in gradiend_core (imports inside functions count),
no function over 60 lines there, no Prefect in it, and every declared stage with its module, config
section, task and test."""
import ast
import dataclasses
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "gradiend_core"
MAX_LINES = 60


def modules(package: Path) -> dict[str, Path]:
    out = {}
    for p in package.rglob("*.py"):
        parts = list(p.relative_to(ROOT).with_suffix("").parts)
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    return out


def imported(mod: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Modules of `known` that `mod` imports anywhere (module level or inside functions)."""
    is_pkg = path.name == "__init__.py"
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = mod.split(".") if is_pkg else mod.split(".")[:-1]
            if node.level:
                base = base[:len(base) - (node.level - 1)]
            prefix = ".".join(base + [node.module] if node.module else base) if node.level else node.module
            names = [prefix] + [f"{prefix}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != mod and not mod.startswith(name + "."):  # a package's own __init__ aside
                out.add(name)
    return out


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in edges:
        if v not in index:
            visit(v)
    return found


def test_cycle_finder_finds_a_cycle_hidden_in_a_function(tmp_path, monkeypatch):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\n")
    (pkg / "b.py").write_text("def f():\n    from .a import x\n")
    monkeypatch.setattr(__import__(__name__), "ROOT", tmp_path)
    known = modules(pkg)
    assert cycles({m: imported(m, p, known) for m, p in known.items()}) == [["pkg.a", "pkg.b"]]


def test_gradiend_core_has_no_import_cycle():
    known = modules(CORE)
    assert cycles({m: imported(m, p, known) for m, p in known.items()}) == []


def test_no_function_in_gradiend_core_is_over_60_lines():
    long = [f"{p.relative_to(ROOT)}:{n.name} ({n.end_lineno - n.lineno + 1} lines)"
            for p in CORE.rglob("*.py") for n in ast.walk(ast.parse(p.read_text()))
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.end_lineno - n.lineno + 1 > MAX_LINES]
    assert long == []


def test_gradiend_core_never_imports_prefect():
    known = {**modules(CORE), "prefect": Path()}
    users = [m for m, p in modules(CORE).items() if "prefect" in imported(m, p, known)]
    assert users == []


def test_every_declared_stage_has_its_module_section_task_and_test():
    from gradiend_core.experiment import ExperimentConfig
    from gradiend_core.stages.registry import STAGES
    from tasks.stage import stage_task

    sections = {f.name for f in dataclasses.fields(ExperimentConfig)}
    for decl in STAGES:
        module = decl.build.__module__
        assert module.startswith("gradiend_core.stages."), decl.name
        assert set(decl.sections) <= sections, f"{decl.name}: sections {decl.sections} not in ExperimentConfig"
        assert stage_task(decl.name).name == decl.name
        test = ROOT / "tests" / "gradiend_core" / "stages" / f"test_{module.rsplit('.', 1)[1]}.py"
        assert test.is_file(), f"{decl.name}: no integration test {test.relative_to(ROOT)}"
    assert len({d.name for d in STAGES}) == len(STAGES)


@pytest.mark.parametrize("kind", ["section", "test"])
def test_the_stage_check_fails_for_a_stage_missing_its(kind, monkeypatch):
    """The check above is not vacuous: a declared stage without a section or a test is caught."""
    import dataclasses as dc

    from gradiend_core.stages import registry
    from gradiend_core.stages.declaration import Stage

    fake = Stage(name="new-stage", version="1", sections=("no_such_section",) if kind == "section" else ("train",),
                 build=registry.STAGES[0].build)
    if kind == "test":  # a build function of a stages module that has no test file
        from gradiend_core.stages.common import pin_torch_threads

        fake = dc.replace(fake, build=pin_torch_threads)
    monkeypatch.setattr(registry, "STAGES", registry.STAGES + (fake,))
    monkeypatch.setattr(registry, "BY_NAME", {**registry.BY_NAME, fake.name: fake})
    with pytest.raises(AssertionError, match="not in ExperimentConfig" if kind == "section" else "no integration test"):
        test_every_declared_stage_has_its_module_section_task_and_test()
