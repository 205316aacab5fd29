"""The camera package's frame path reads in one direction: no import loop, not even a lazy one."""

from __future__ import annotations

import grimp
import pytest


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("vinspect", include_external_packages=False)


def test_the_acquisition_child_does_not_import_the_factory_that_builds_it(graph: grimp.ImportGraph) -> None:
    for module in ("vinspect.camera.process_child", "vinspect.camera.process", "vinspect.camera.wire"):
        chain = graph.find_shortest_chain(importer=module, imported="vinspect.camera.factory")
        assert chain is None, f"{module} reaches the factory: {' -> '.join(chain or ())}"


def test_no_camera_module_imports_one_that_imports_it_back(graph: grimp.ImportGraph) -> None:
    modules = sorted(m for m in graph.modules if m.startswith("vinspect.camera."))
    loops = [
        (a, b)
        for a in modules
        for b in graph.find_modules_directly_imported_by(a)
        if b.startswith("vinspect.camera.") and graph.find_shortest_chain(importer=b, imported=a) is not None
    ]
    assert loops == []
