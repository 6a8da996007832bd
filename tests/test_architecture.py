"""The house rules the import contract (pyproject.toml, run by `make test`) cannot state alone:
every module sits in a layer, no import cycle between modules or subpackages, imports inside
functions only where they keep torch out of start-up, and the model kinds all load through the
registry."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib

import grimp
import pytest

from backend.core.errors import CheckpointMissing
from backend.core.paths import DataLayout
from inference import models
from tests.conftest import REPO

PACKAGES = ("backend", "inference", "tiles")


@pytest.fixture(scope="module")
def graph():
    return grimp.build_graph(*PACKAGES)


def _layer_modules() -> list[str]:
    contracts = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    layers = next(c for c in contracts if c["type"] == "layers")["layers"]
    return [m.strip() for layer in layers for m in layer.replace("|", ":").split(":")]


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
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
                out.append(sorted(comp))

    sys.setrecursionlimit(10_000)
    for v in list(edges):
        if v not in index:
            visit(v)
    return out


def test_every_module_belongs_to_a_layer_of_the_contract(graph):
    layers = _layer_modules()
    outside = sorted(m for m in graph.modules if m not in PACKAGES
                     and not any(m == layer or m.startswith(layer + ".") for layer in layers))
    assert not outside, f"modules in no layer of pyproject.toml's contract: {outside}"


def test_no_import_cycle_between_modules_or_subpackages(graph):
    modules = {m: set(graph.find_modules_directly_imported_by(m)) - set(PACKAGES) for m in graph.modules}
    assert not _cycles(modules), "module import cycles"
    # subpackages: backend.core, backend.jobs, inference.sdm, tiles.render, ... (the top-level folders
    # themselves do meet: backend.core, below everything, lives in backend)
    group = lambda m: ".".join(m.split(".")[:2])  # noqa: E731
    packages: dict[str, set[str]] = {}
    for m, deps in modules.items():
        packages.setdefault(group(m), set()).update(group(d) for d in deps if group(d) != group(m))
    assert not _cycles(packages), "subpackage import cycles"


def test_imports_inside_functions_only_keep_torch_out_of_start_up():
    found = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            src = path.read_text()
            lines = src.splitlines()
            for node in ast.walk(ast.parse(src)):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    for sub in ast.walk(node):
                        if isinstance(sub, (ast.Import, ast.ImportFrom)) and "# torch:" not in lines[sub.lineno - 1]:
                            found.append(f"{path.relative_to(REPO)}:{sub.lineno}")
    assert not found, f"imports inside functions without a '# torch:' reason: {sorted(set(found))}"


def test_api_and_command_line_start_without_torch():
    code = ("import sys, backend.app, backend.cli, backend.jobs.worker; "
            "print(sorted(m for m in ('torch', 'transformers', 'sklearn') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("name", sorted(models.KINDS))
def test_every_model_kind_loads_through_the_registry(name, tmp_path):
    kind = models.kind(name)
    path = DataLayout(tmp_path).checkpoint("somewhere", name)
    assert path == tmp_path / "models" / "somewhere" / f"{name}.pt"
    with pytest.raises(CheckpointMissing, match=f"no {kind.title} checkpoint at .*`{kind.train_command}`"):
        kind.load(path)


def test_the_cascade_checks_its_model_files(tmp_path):
    (tmp_path / "sdm.pt").write_bytes(b"x")
    assert models.check_cascade_checkpoints({"sdm": tmp_path / "sdm.pt", "botaclip": None}) == \
        {"sdm": tmp_path / "sdm.pt"}
    with pytest.raises(FileNotFoundError, match="needs a SDM checkpoint: train one with `geoflora train sdm`"):
        models.check_cascade_checkpoints({"plantbert": None})
    with pytest.raises(FileNotFoundError, match="no Pl@ntBERT checkpoint at .*`geoflora train plantbert`"):
        models.check_cascade_checkpoints({"sdm": tmp_path / "sdm.pt", "plantbert": tmp_path / "nope.pt"})
    with pytest.raises(ValueError, match="'traits' is not a model of the cascade"):
        models.check_cascade_checkpoints({"sdm": tmp_path / "sdm.pt", "traits": tmp_path / "sdm.pt"})
