"""A wheel carries the SQL and the migrations: pyproject maps them in, data_dir finds them."""
from __future__ import annotations

import fnmatch
import importlib.util
import shutil
import tomllib
from pathlib import Path

import ddex_etl

REPO = Path(__file__).resolve().parent.parent


def _setuptools() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]


def test_every_sql_and_migration_file_is_packaged() -> None:
    st = _setuptools()
    for folder in ("sql", "migrations"):
        package = f"ddex_etl._{folder}"
        assert package in st["packages"] and st["package-dir"][package] == folder
        patterns = st["package-data"][package]
        files = [
            p.relative_to(REPO / folder).as_posix()
            for p in (REPO / folder).rglob("*")
            if p.is_file() and "__pycache__" not in p.parts
        ]
        assert files
        missing = [f for f in files if not any(fnmatch.fnmatch(f, pat) and f.count("/") == pat.count("/") for pat in patterns)]
        assert missing == [], f"{folder}/ files a wheel would leave out: {missing}"


def test_data_dir_reads_the_checkout_or_the_packaged_copy(tmp_path: Path) -> None:
    assert ddex_etl.data_dir("sql") == REPO / "sql"
    assert ddex_etl.data_dir("migrations") == REPO / "migrations"
    # An installed wheel: the package folder holds _sql, and no sql/ lies beside it.
    pkg = tmp_path / "site-packages" / "ddex_etl"
    pkg.mkdir(parents=True)
    shutil.copy(REPO / "ddex_etl" / "__init__.py", pkg / "__init__.py")
    (pkg / "_sql").mkdir()
    spec = importlib.util.spec_from_file_location("installed_ddex_etl", pkg / "__init__.py")
    assert spec is not None and spec.loader is not None
    installed = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(installed)
    assert installed.data_dir("sql") == pkg / "_sql"


def test_every_package_folder_is_listed() -> None:
    # pyproject lists the packages by hand: a sub-package left out of the list
    # still imports from a checkout, and is missing from the wheel.
    listed = set(_setuptools()["packages"])
    folders = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "ddex_etl").rglob("__init__.py")}
    assert folders - listed == set()
