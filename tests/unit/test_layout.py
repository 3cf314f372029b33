"""The layout's boundary, read from the code: the engine and the Triton glue know no family, and families
never import each other. Modules still listing families by hand are named here until they loop over
ensemble/families.py (each line is a debt, not a permission for new code)."""

import ast
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


def family_of(module: str) -> str | None:
    for stage in ("ensemble", "export"):
        for name in FAMILIES:
            if module == f"tritone.{stage}.{name}" or module.startswith(f"tritone.{stage}.{name}."):
                return name
    return None


def shared_modules() -> list[Path]:
    folders = [ROOT / "ensemble" / "engine", ROOT / "ensemble" / "triton", ROOT / "serving"]
    files = [path for folder in folders for path in folder.rglob("*.py")]
    files += [path for path in (ROOT / "export").glob("*.py")] + [ROOT / "ensemble" / "tensors.py"]
    return sorted(files)


def test_the_engine_the_triton_glue_export_common_code_and_serving_import_no_family():
    offenders = {
        str(path.relative_to(ROOT)): sorted(m for m in imported_modules(path) if family_of(m))
        for path in shared_modules()
    }
    offenders = {path: modules for path, modules in offenders.items() if modules}
    assert set(offenders) <= STILL_LISTING_FAMILIES_BY_HAND, offenders


def test_families_never_import_each_other():
    for name in FAMILIES:
        for stage in ("ensemble", "export"):
            for path in (ROOT / stage / name).rglob("*.py"):
                others = {family_of(m) for m in imported_modules(path)} - {None, name}
                assert not others, f"{path.relative_to(ROOT)} imports {others}"


def test_every_family_in_the_registry_has_its_folders_and_its_pipeline_model():
    for name, family in FAMILIES.items():
        assert (ROOT / "ensemble" / name / "spec.py").is_file() and (ROOT / "export" / name).is_dir()
        assert family.models()[-1].name == name  # the decoupled pipeline, named after the family
        assert (ROOT / "model_repository" / name / "1" / "model.py").is_file()
