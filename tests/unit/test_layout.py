"""The layout's boundary, read from the code: the engine, the Triton glue, the shared export code,
serving, the gateway and the shared benchmark code know no family (they loop over ensemble/families.py), and
families never import each other (ensemble/<name>/, export/<name>/, benchmarks/<name>/). Modules still listing families by hand are named here until they loop over
ensemble/families.py (each line is a debt, not a permission for new code)."""

import ast
import importlib
import re
from pathlib import Path

from tritone.ensemble.families import FAMILIES

ROOT = Path(__file__).resolve().parents[2]
STILL_LISTING_FAMILIES_BY_HAND: set[str] = set()


def imported_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
            modules.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
    return modules


STAGES = ("ensemble", "export", "benchmarks")  # a family is a folder in each


def named_family_modules(path: Path) -> set[str]:
    """Family modules a file names in a string (an importlib.import_module by hand)."""
    pattern = re.compile(rf"tritone\.(?:{'|'.join(STAGES)})\.(?:{'|'.join(FAMILIES)})\b[\w.]*")
    return {match for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
            for match in pattern.findall(node.value)}


def family_of(module: str) -> str | None:
    for stage in STAGES:
        for name in FAMILIES:
            if module == f"tritone.{stage}.{name}" or module.startswith(f"tritone.{stage}.{name}."):
                return name
    return None


def shared_modules() -> list[Path]:
    folders = [ROOT / "ensemble" / "engine", ROOT / "ensemble" / "triton", ROOT / "serving", ROOT / "gateway"]
    files = [path for folder in folders for path in folder.rglob("*.py")]
    files += [path for stage in ("export", "benchmarks") for path in (ROOT / stage).glob("*.py")]
    return sorted(files + [ROOT / "ensemble" / name for name in ("tensors.py", "llama_step.py", "metadata_file.py")])


def test_the_engine_the_triton_glue_export_common_code_serving_the_gateway_and_benchmarks_import_no_family():
    assert ROOT / "benchmarks" / "runner.py" in shared_modules() and ROOT / "gateway" / "voices.py" in shared_modules()
    offenders = {
        str(path.relative_to(ROOT)): sorted(m for m in imported_modules(path) | named_family_modules(path)
                                            if family_of(m))
        for path in shared_modules()
    }
    offenders = {path: modules for path, modules in offenders.items() if modules}
    assert set(offenders) <= STILL_LISTING_FAMILIES_BY_HAND, offenders


def test_families_never_import_each_other():
    for name in FAMILIES:
        for stage in STAGES:
            for path in (ROOT / stage / name).rglob("*.py"):
                others = {family_of(m) for m in imported_modules(path)} - {None, name}
                assert not others, f"{path.relative_to(ROOT)} imports {others}"


def test_every_family_in_the_registry_has_its_folders_and_its_pipeline_model():
    for name, family in FAMILIES.items():
        assert (ROOT / "ensemble" / name / "spec.py").is_file() and (ROOT / "export" / name).is_dir()
        assert family.models()[-1].name == name  # the decoupled pipeline, named after the family
        assert (ROOT / "model_repository" / name / "1" / "model.py").is_file()


def test_every_family_has_a_benchmark_the_shared_benchmark_code_finds_through_the_registry():
    labels = {}
    for name, family in FAMILIES.items():
        assert family.benchmark == f"tritone.benchmarks.{name}"
        assert (ROOT / "benchmarks" / name / "suite.py").is_file() and (ROOT / "benchmarks" / name / "report.py").is_file()
        labels[name] = importlib.import_module(family.benchmark).LABEL
        suite = importlib.import_module(f"{family.benchmark}.suite")
        assert callable(suite.add_arguments) and callable(suite.run) and callable(suite.Config.create), name
        report = importlib.import_module(f"{family.benchmark}.report")
        for hook in ("find", "evaluate", "markdown", "plots", "readme"):
            assert callable(getattr(report, hook)), (name, hook)
        assert report.SECTION in (None, labels[name]) and report.PLOTS, name
    # a label names one family and no other family's name; one family at most owns results.json's top level
    assert len(set(labels.values())) == len(labels) and not set(labels.values()) & (set(FAMILIES) - set(labels))
    top_level = [name for name in FAMILIES if importlib.import_module(f"{FAMILIES[name].benchmark}.report").SECTION is None]
    assert len(top_level) <= 1, top_level
