"""The house rules of the code, read from the imports themselves (ast, nothing is imported).

Every import counts, including the ones inside functions (a lazy import still runs, just later); imports under
``if TYPE_CHECKING:`` do not (they never run). ``from pkg import name`` counts as importing ``pkg.name`` when
that is a module of ours, else ``pkg``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("gateway", "anonymizer", "dicom_rules")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imported_names(module: str, path: Path) -> Iterator[str]:
    """Every dotted name the module imports (absolute; relative imports resolved)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    stack: list[ast.AST] = [ast.parse(path.read_text(), str(path))]
    while stack:
        for node in ast.iter_child_nodes(stack.pop()):
            if _is_type_checking(node):
                continue
            if isinstance(node, ast.Import):
                yield from (alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*parts, base] if base else parts)
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    yield full if full in modules() else base
            stack.append(node)


@cache
def imports() -> dict[str, frozenset[str]]:
    """Module -> every name it imports (ours and third-party, as written)."""
    return {m: frozenset(_imported_names(m, p)) for m, p in modules().items()}


def _ours(name: str) -> str | None:
    """The module of ours a dotted name lives in (``pkg.mod.Class`` -> ``pkg.mod``), or None."""
    while name and name not in modules():
        name = name.rpartition(".")[0]
    return name or None


@cache
def graph() -> dict[str, frozenset[str]]:
    ours = {m: {_ours(name) for name in names} for m, names in imports().items()}
    return {m: frozenset(o for o in targets if o is not None and o != m) for m, targets in ours.items()}


def _cycles(g: dict[str, frozenset[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    for root in g:
        if root in index:
            continue
        work = [(root, iter(sorted(g[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(g[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def _importers_of(importer_prefix: str, forbidden: tuple[str, ...]) -> list[str]:
    return sorted(
        f"{m} imports {name}"
        for m, names in imports().items()
        if m == importer_prefix or m.startswith(importer_prefix + ".")
        for name in names
        if any(name == f or name.startswith(f + ".") for f in forbidden)
    )


def test_the_import_graph_is_read_from_real_modules() -> None:
    g = graph()
    assert "gateway.core.pipeline" in g and "anonymizer.pixel_stage" in g["gateway.core.pipeline"]
    assert "dicom_rules.ruleset" in g["dicom_rules.loader"]


def test_no_import_cycles() -> None:
    assert _cycles(graph()) == []


def test_a_planted_cycle_is_found() -> None:
    planted = {**graph(), "dicom_rules.decision": graph()["dicom_rules.decision"] | {"dicom_rules.loader"}}
    assert any({"dicom_rules.decision", "dicom_rules.loader"} <= set(c) for c in _cycles(planted))


def test_imports_run_one_way() -> None:
    """gateway -> dicom_rules -> anonymizer: the library never reaches up."""
    assert _importers_of("anonymizer", ("gateway", "dicom_rules")) == []
    assert _importers_of("dicom_rules", ("gateway",)) == []


VERA = "anonymizer.engines.vera"
VERA_TRAINING = f"{VERA}.training"
VERA_COMMANDS = f"{VERA}.cli"  # `vera-gateway vera train ...`: reaches training; inference never loads it


def _reachable(start: str) -> set[str]:
    seen, todo = {start}, [start]
    while todo:
        for nxt in graph()[todo.pop()] - seen:
            seen.add(nxt)
            todo.append(nxt)
    return seen


def test_vera_inference_never_reaches_training_code() -> None:
    """Engine, generator, inversion, checkpoint loading: none of them (nor what they import, transitively)
    imports the training subpackage or torch.distributed."""
    inference = [
        m for m in modules() if m.startswith(VERA) and not m.startswith(VERA_TRAINING) and m != VERA_COMMANDS
    ]
    assert {f"{VERA}.{m}" for m in ("engine", "generator", "inversion", "checkpoint")} <= set(inference)
    leaks = sorted(
        f"{m} reaches {r}"
        for m in inference
        for r in _reachable(m)
        if r.startswith(VERA_TRAINING) or r == VERA_COMMANDS
    )
    assert leaks == []
    distributed = sorted(
        f"{r} imports {name}"
        for m in inference
        for r in _reachable(m)
        for name in imports()[r]
        if name.startswith("torch.distributed")
    )
    assert distributed == []
    # the check can see it where it is (the training loop):
    assert any(n.startswith("torch.distributed") for n in imports()[f"{VERA_TRAINING}.train"])


def _calls(module: str, function: str) -> bool:
    tree = ast.parse(modules()[module].read_text())
    return any(
        isinstance(n, ast.Call) and ast.unparse(n.func).split(".")[-1] == function for n in ast.walk(tree)
    )


def test_engines_are_loaded_one_way() -> None:
    """Only :func:`anonymizer.engines.load_engine` builds engines; the pixel stage and the doctor call it."""
    assert [m for m in modules() if _calls(m, "create_engine")] == ["anonymizer.engines.base"]
    assert _calls("anonymizer.pixel_stage", "load_engine") and _calls("gateway.ops.doctor", "load_engine")


def test_engine_options_rule_wins_and_surrogate_gets_the_bank() -> None:
    from anonymizer.engines import engine_options, load_engine

    defaults = {"blur": {"sigma": 3}, "surrogate": {"k": 6}}
    assert engine_options("blur", {"sigma": 9}, defaults) == {"sigma": 9}
    assert engine_options("blur", {}, defaults, donor_bank="/x.npz") == {"sigma": 3}
    assert engine_options("surrogate", {}, defaults, "/x.npz") == {"k": 6, "donor_bank": "/x.npz"}
    assert engine_options("surrogate", {"donor_bank": "/y"}, None, "/x.npz") == {"donor_bank": "/y"}
    assert load_engine("mask", {}).name == "mask"
