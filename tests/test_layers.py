"""The package's import graph: read from the source with ``ast`` (lazy imports inside functions count too),
it must have no cycle between modules and respect the declared layer order (README, "Module map")."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "diffusion_lm"

# Lowest first. A module may import its own component, and components of lower layers; components in the
# same layer must not import each other (e.g. diffusion/ and metrics/ are independent siblings).
LAYERS: list[set[str]] = [
    {"errors", "stats"},  # leaves
    {"models"},  # the denoiser and its weights' formats: imports only the leaves
    {"checkpoint"},  # reading .ckpt files, the weights-only allow-list
    {"diffusion", "metrics"},  # processes, samplers | scores
    {"data"},  # tokenizers, data modules (a data module builds its metrics)
    {"pretrained", "flops", "strategies"},  # init_from sources | FLOPs | FSDP policy
    {"callbacks"},
    {"recipes"},
    {"distill"},  # sequence-level KD data from a trained recipe
    {"cli"},  # the command line: LightningCLI, trainer, calibrate / predict / distill / export glue
]
LAYER_OF = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """Every ``diffusion_lm`` module ``path`` imports (relative imports resolved)."""
    name = module_name(path)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            # `from . import x` / `from .pkg import mod`: the imported names may be submodules
            targets = [target] + [f"{target}.{a.name}" for a in node.names]
            out |= {t for t in targets if t.split(".")[0] == "diffusion_lm"}
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "diffusion_lm"}
    return out


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {m: {t for t in imported_modules(p) if t in modules and t != m} for m, p in modules.items()}


def component(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """A cycle of ``edges`` as a module list (first = last), or None: depth-first search with colours."""
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for t in sorted(edges.get(m, ())):
            if state.get(t) == 1:
                return stack[stack.index(t):] + [t]
            if t not in state and (cycle := visit(t)):
                return cycle
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(edges):
        if m not in state and (cycle := visit(m)):
            return cycle
    return None


def layer_violations(edges: dict[str, set[str]]) -> list[str]:
    bad = []
    for m, targets in sorted(edges.items()):
        src = component(m)
        for t in sorted(targets):
            dst = component(t)
            if src in ("", dst) or dst == "":
                continue
            if LAYER_OF[dst] >= LAYER_OF[src]:
                bad.append(f"{m} imports {t}: {dst} is not in a layer below {src}")
    return bad


def test_every_component_has_a_layer():
    components = {component(m) for m in graph()} - {""}
    assert components - set(LAYER_OF) == set(), "declare the layer of every top-level module/package"
    assert set(LAYER_OF) - components == set(), "a declared layer names a component that does not exist"


def test_no_import_cycle():
    assert find_cycle(graph()) is None


def test_imports_follow_the_layer_order():
    assert layer_violations(graph()) == []


def test_models_is_a_leaf():
    edges = graph()
    outside = {t for m, ts in edges.items() if component(m) == "models" for t in ts
               if component(t) not in ("models", "errors")}
    assert outside == set()


@pytest.mark.parametrize("edges, cycle", [
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, ["a", "b", "c", "a"]),
    ({"a": {"b"}, "b": {"c"}, "c": set()}, None),
])
def test_find_cycle(edges, cycle):
    assert find_cycle(edges) == cycle


def test_layer_violations_name_the_import():
    edges = {"diffusion_lm.models.denoiser": {"diffusion_lm.checkpoint"},
             "diffusion_lm.diffusion.mbr": {"diffusion_lm.metrics.text"},
             "diffusion_lm.recipes.base": {"diffusion_lm.models.denoiser"}}
    assert layer_violations(edges) == [
        "diffusion_lm.diffusion.mbr imports diffusion_lm.metrics.text: metrics is not in a layer below diffusion",
        "diffusion_lm.models.denoiser imports diffusion_lm.checkpoint: checkpoint is not in a layer below models",
    ]
