"""pyproject.toml declares every third-party package that distill/ imports (at any depth of the code), as a
dependency or an optional extra; an import inside `try: ... except ImportError` has a fallback and need not be."""

import ast
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# import name -> distribution name where they differ
DISTRIBUTION = {"PIL": "pillow", "yaml": "PyYAML", "sklearn": "scikit-learn", "torch_fidelity": "torch-fidelity"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared() -> set[str]:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = list(project["dependencies"]) + [s for extra in project["optional-dependencies"].values() for s in extra]
    return {_norm(re.split(r"[\s<>=!~;\[]", s, maxsplit=1)[0]) for s in specs}


def _guarded(tree) -> set[int]:
    """ids of the import nodes inside a `try` with an `except ImportError` (or ModuleNotFoundError) handler."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try):
            caught = {ast.unparse(h.type) if h.type else "Exception" for h in node.handlers}
            if caught & {"ImportError", "ModuleNotFoundError"}:  # a fallback, not an error message
                out.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return out


def imports_of(path: Path) -> dict[str, bool]:
    """top-level module name -> whether every import of it in `path` is guarded."""
    tree = ast.parse(path.read_text())
    guarded, out = _guarded(tree), {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for n in names:
            top = n.split(".")[0]
            out[top] = out.get(top, True) and id(node) in guarded
    return out


def third_party_imports() -> dict[str, list[str]]:
    """top-level third-party module -> the files that import it unguarded."""
    found: dict[str, list[str]] = {}
    for p in sorted((ROOT / "distill").rglob("*.py")):
        for top, guarded in imports_of(p).items():
            if top in sys.stdlib_module_names or top == "distill" or guarded:
                continue
            found.setdefault(top, []).append(str(p.relative_to(ROOT)))
    return found


def test_every_import_is_declared():
    declared = _declared()
    found = third_party_imports()
    assert {"torch", "diffusers", "huggingface_hub", "yaml", "PIL"} <= set(found)  # the scan sees the package
    missing = {top: files[:3] for top, files in found.items() if _norm(DISTRIBUTION.get(top, top)) not in declared}
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"


# runtime dependencies another package loads by name for distill: tensorboard is accelerate's tracker of the default
# `train.report_to` (distill/engine/accelerator.py checks it with importlib.util.find_spec, never imports it)
LOADED_BY_NAME = {"tensorboard": "accelerate (train.report_to: tensorboard)"}


def test_declared_runtime_dependencies_are_imported():
    """A runtime dependency nothing in distill/ imports (guarded imports count) is dead weight: scipy was one."""
    try:
        import tomllib
    except ImportError:
        tomllib = pytest.importorskip("tomli")
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {_norm(re.split(r"[\s<>=!~;\[]", s, maxsplit=1)[0]) for s in deps}
    used = {_norm(DISTRIBUTION.get(top, top)) for p in (ROOT / "distill").rglob("*.py") for top in imports_of(p)}
    used |= set(LOADED_BY_NAME)
    assert not names - used, f"declared but imported nowhere in distill/: {sorted(names - used)}"


def test_guarded_import_is_optional(tmp_path):
    """The rule the scan applies: a guarded import is optional, an unguarded one counts."""
    p = tmp_path / "m.py"
    p.write_text("import os\ntry:\n    import psutil\nexcept ImportError:\n    psutil = None\n"
                 "def f():\n    from PIL import Image\n")
    assert imports_of(p) == {"os": False, "psutil": True, "PIL": False}


def test_flow_scheduler_refuses_an_override_the_installed_diffusers_lacks():
    """On a diffusers whose scheduler has no `stochastic_sampling` (before 0.34) the flow student would sample
    with the wrong scheduler: one line naming the key and the release instead; config keys it lacks are dropped."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    from distill.diffusion.sampling import flow_scheduler
    from distill.errors import DistillError

    class OlderFlowEuler:  # FlowMatchEulerDiscreteScheduler's signature before diffusers 0.34
        def __init__(self, num_train_timesteps=1000, shift=1.0):
            self.shift = shift

    config = FlowMatchEulerDiscreteScheduler(shift=3.0).config
    assert flow_scheduler(OlderFlowEuler, config).shift == 3.0
    with pytest.raises(DistillError, match=r"OlderFlowEuler of diffusers \S+ does not accept 'stochastic_sampling': "
                                           r"needs diffusers>=0\.34\.0") as e:
        flow_scheduler(OlderFlowEuler, config, stochastic_sampling=True)
    assert "\n" not in str(e.value)
    assert flow_scheduler(FlowMatchEulerDiscreteScheduler, config, stochastic_sampling=True).config.stochastic_sampling
