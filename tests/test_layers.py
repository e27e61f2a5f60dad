"""The package's layers import one way, and no module imports itself back through others.

Every ``studylib`` import counts: at the top of a module, inside a function (lazy), or under
``TYPE_CHECKING``. Layers, bottom to top (a module may import its own layer and those below):
"""

from __future__ import annotations

import pytest

from studylib.hashing import code_scope, source_imports, studylib_imports, studylib_modules

#: Bottom to top. A prefix names a module or a sub-package with everything in it.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("foundation", ("studylib", "studylib.params", "studylib.hashing", "studylib.storage", "studylib.paper",
                    "studylib.progress")),
    ("geometry", ("studylib.geometry",)),
    ("data", ("studylib.data",)),
    ("images", ("studylib.raster", "studylib.images", "studylib.flatmaps")),
    ("train", ("studylib.train",)),
    ("analysis", ("studylib.evaluate", "studylib.explain", "studylib.baselines", "studylib.plotting")),
    ("study", ("studylib.study",)),
]


def layer_of(module: str) -> int:
    """Index in :data:`LAYERS` of the longest prefix naming ``module``."""
    best, rank = -1, None
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, rank = len(prefix), index
    if rank is None:
        raise LookupError(f"{module} belongs to no layer; add it to LAYERS in {__file__}")
    return rank


def test_every_module_has_a_layer():
    for module in studylib_modules():
        layer_of(module)


def test_lower_layers_never_import_higher_ones():
    upward = []
    for module in studylib_modules():
        for imported in studylib_imports(module):
            if layer_of(imported) > layer_of(module):
                upward.append(f"{module} ({LAYERS[layer_of(module)][0]}) imports {imported} "
                              f"({LAYERS[layer_of(imported)][0]})")
    assert not upward, "imports against the layers:\n" + "\n".join(upward)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for child in graph.get(node, ()):
            if child not in index:
                visit(child)
                low[node] = min(low[node], low[child])
            elif child in on_stack:
                low[node] = min(low[node], index[child])
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

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles():
    graph = {module: studylib_imports(module) for module in studylib_modules()}
    assert _cycles(graph) == []


def test_the_checks_see_lazy_type_checking_and_relative_imports():
    source = '''
from typing import TYPE_CHECKING
from .cohort import Cohort
from .. import paper
if TYPE_CHECKING:
    from ..train.jobs import Job

def later():
    import studylib.plotting as plotting
    from studylib.geometry import mesh
'''
    found = source_imports(source, "studylib.data.build")
    assert found == {"studylib.data.cohort", "studylib.paper", "studylib.train.jobs", "studylib.plotting",
                     "studylib.geometry.mesh"}
    assert layer_of("studylib.train.jobs") > layer_of("studylib.data.build")
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_a_package_init_resolves_its_relative_imports_inside_itself():
    assert source_imports("from .cohort import Cohort", "studylib.data", is_package=True) == {"studylib.data.cohort"}


def test_code_scope_of_cohort_building_leaves_out_plotting_training_and_the_study_machinery():
    scope = code_scope("studylib.data.build")
    assert "studylib.data.simulate" in scope and "studylib.geometry.laplacian" in scope
    assert not [m for m in scope if layer_of(m) > layer_of("studylib.data.build")]


@pytest.mark.parametrize("module", ["studylib.train.jobs", "studylib.geometry.flatten"])
def test_cache_scopes_stay_below_their_layer(module):
    assert not [m for m in code_scope(module) if layer_of(m) > layer_of(module)]
