"""The package's shape: imports point down the floors only (no cycle, type-only imports included),
modules stay under 350 lines and functions under 60, and ruff's lint rules find nothing."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "herd_cls"
# ground floor first; a module may import its own floor or lower ones
FLOORS = [
    {"registry", "options", "layout", "files"},
    {
        "losses",
        "derivatives",
        "curvature",
        "block_curvature",
        "decoder_curvature",
        "concept_whitening",
        "image_sets",
        "builtin_data",
        "data",
        "distributed",
    },
    {"targets", "purity", "heads", "backbones", "models", "metrics", "disentanglement"},
    {"regularizers"},
    {"config", "objective", "diagnostics", "evaluation"},
    {"run", "session", "train"},
    {"analysis"},
    {"report"},
    {"commands", "cli", "cli_analysis", "cli_options", "benchmarking", "__main__", "__init__"},
]


def _floor(module: str) -> int:
    top = module.split(".")[1] if "." in module else module
    return next(i for i, names in enumerate(FLOORS) if top in names)


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        yield ".".join(parts[:-1] if parts[-1] == "__init__" else parts), path


def _imports(module: str, path: Path) -> set[str]:
    """herd_cls modules that ``module`` imports, anywhere in the file (TYPE_CHECKING blocks too)."""
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[: len(base) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            if name.startswith("herd_cls"):
                found |= {name} if node.module else {f"{name}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("herd_cls")}
    known = {m for m, _ in _modules()}
    return {n if n in known else n.rsplit(".", 1)[0] for n in found} - {module}


def test_imports_point_down_and_have_no_cycle():
    graph = {m: _imports(m, p) for m, p in _modules()}
    upward = [
        (m, n)
        for m, deps in graph.items()
        if m != "herd_cls"
        for n in deps
        if n != "herd_cls" and _floor(n) > _floor(m)
    ]
    assert not upward, f"modules importing a floor above their own: {upward}"
    state: dict[str, int] = {}

    def visit(m, trail):
        state[m] = 1
        for n in graph.get(m, ()):
            assert state.get(n) != 1, f"import cycle: {' -> '.join(trail + [n])}"
            if n not in state:
                visit(n, trail + [n])
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m, [m])


def test_models_import_nothing_from_the_regularizers():
    assert not {
        n for n in _imports("herd_cls.models", PACKAGE / "models.py") if "regularizers" in n
    }


@pytest.mark.parametrize(
    "module,path", list(_modules()), ids=lambda v: str(v) if isinstance(v, str) else ""
)
def test_modules_and_functions_stay_small(module, path):
    text = path.read_text()
    assert len(text.splitlines()) <= 350, f"{module} has {len(text.splitlines())} lines"
    long = [
        (n.name, n.end_lineno - n.lineno + 1)
        for n in ast.walk(ast.parse(text))
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
        and n.end_lineno - n.lineno + 1 > 60
    ]
    assert not long, f"functions over 60 lines in {module}: {long}"


def test_scripts_are_clients_of_the_public_library():
    """A script imports no other script and no private name of herd_cls (nor reads one off a module
    it imported, as in ``bench._x``): what scripts share lives in herd_cls.benchmarking, which this
    test's floors and tests/benchmarking/ cover."""
    scripts = sorted((PACKAGE.parent / "scripts").glob("*.py"))
    names = {p.stem for p in scripts}
    found = []
    for path in scripts:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found += [(path.name, a.name) for a in node.names if a.name.split(".")[0] in names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                if node.module.split(".")[0] in names:
                    found.append((path.name, node.module))
                if node.module.startswith("herd_cls"):
                    private = [a.name for a in node.names if a.name.startswith("_")]
                    private += [p for p in node.module.split(".") if p.startswith("_")]
                    found += [(path.name, f"{node.module}.{p}") for p in private]
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                if node.attr.startswith("_") and not node.attr.startswith("__"):
                    found.append((path.name, f"{node.value.id}.{node.attr}"))
    assert not found, f"scripts importing another script or a private name: {found}"


def test_ruff_finds_nothing_and_the_code_is_formatted():
    """ruff's lint rules and its formatter (pyproject.toml, [tool.ruff]: lines of at most 100) on
    the package, the scripts and the tests; ruff comes with the test extras."""
    import subprocess
    import sys

    root = PACKAGE.parent
    folders = ["herd_cls", "scripts", "tests"]
    for command in (["check"], ["format", "--check"]):
        done = subprocess.run(
            [sys.executable, "-m", "ruff", *command, *folders],
            cwd=root,
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stdout + done.stderr


# modules whose tests live elsewhere, and where; every other module has tests/<its folder>/test_<its
# name>.py
TESTED_IN = {
    "backbones": "test_models.py (the local encoders and decoders, timm backbones and their "
    "pre-logits)",
    "derivatives": "test_curvature.py (every computation against the autograd oracle)",
    "block_curvature": "test_curvature.py (the closed form and the block masses against the "
    "autograd oracle)",
    "cli": "test_train.py, test_run.py, report/test_views.py (the group and the train command as "
    "typed)",
    "cli_analysis": "analysis/test_sweep.py, analysis/test_robustness.py, test_run.py, "
    "report/test_pages.py, report/test_command_pages.py (the analysis commands as typed)",
    "analysis.class_views": "analysis/test_sweep.py, report/test_pages.py (the sweep and attribute "
    "commands)",
    "analysis.evidence": "analysis/test_scores.py (the metrics that read it: image block effect, "
    "factor scores)",
    "commands": "analysis/test_sweep.py, report/test_pages.py (through the CLI)",
    "objective": "test_train.py (every loss term through training runs)",
    "registry": "test_heads.py, test_data.py (an unknown name lists the valid ones)",
    "analysis.decoder": "analysis/test_sweep.py (the latent grid and its factors)",
    "analysis.latents": "test_models.py, analysis/test_sweep.py (collecting latents in eval mode)",
    "analysis.posthoc": "analysis/test_sweep.py (the post-hoc decoder, fitted once and cached)",
    "regularizers.base": "regularizers/test_objects.py (the Regularizer contract)",
    "regularizers.herd": "regularizers/test_herd_penalty.py, regularizers/test_herd_image.py (the "
    "HeRD module)",
    "regularizers.vae": "regularizers/test_baselines.py",
    "regularizers.hessian_penalty": "regularizers/test_baselines.py",
    "regularizers.orojar": "regularizers/test_baselines.py",
    "regularizers.concept_whitening": "test_concept_whitening.py (the layer and the run that turns "
    "it)",
    "report.html": "test_files.py, report/test_pages.py (rendering, atomically)",
    "report.sweep_figures": "report/test_figures.py",
}


@pytest.mark.parametrize(
    "module,path",
    [m for m in _modules() if not m[1].name.startswith("__")],
    ids=lambda v: str(v) if isinstance(v, str) else "",
)
def test_every_module_has_its_own_tests_or_says_where_they_live(module, path):
    name = module.removeprefix("herd_cls.")
    folder = Path(*name.split(".")[:-1])
    mirror = PACKAGE.parent / "tests" / folder / f"test_{name.split('.')[-1]}.py"
    where = TESTED_IN.get(name)
    assert mirror.is_file() or where, (
        f"{module}: add {mirror.relative_to(PACKAGE.parent)} or say in TESTED_IN where its tests "
        "are"
    )
    if where:
        assert not mirror.is_file(), f"{module} has {mirror.name}: drop it from TESTED_IN"
        import re

        for file in re.findall(r"[\w/]+\.py", where):
            assert (PACKAGE.parent / "tests" / file).is_file(), (
                f"TESTED_IN names {file}, which does not exist"
            )
