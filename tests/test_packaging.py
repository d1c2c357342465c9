"""The package as users install it: a wheel that carries the configs and the demo annotations,
the ``wsol-bench`` console script, and a non-editable install that runs outside the checkout."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import tomllib

from tests.helpers import REPO


def test_the_package_list_matches_the_folders():
    """Every code folder and every folder of conf/ (data packages: yaml files, no __init__.py) is listed."""
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "wsol_bench").rglob("__init__.py")
               if not p.is_relative_to(REPO / "wsol_bench" / "conf")}  # a worktree's conf symlink is not code
    conf = {".".join(("wsol_bench", *d.relative_to(REPO).parts)) for d in (REPO / "conf").rglob("*")
            if d.is_dir() and d.name != "__pycache__"}
    assert on_disk | conf | {"wsol_bench.conf", "wsol_bench.demo_annotations"} == listed


def _copy_checkout(source: Path) -> Path:
    """The checkout copied to ``source``: setuptools writes build/ and *.egg-info beside the sources, not into the
    checkout; a helper worktree's untracked symlinks (wsol_bench/conf, wsol_bench/demo_annotations) are left out."""
    shutil.copytree(REPO, source, symlinks=True,
                    ignore=shutil.ignore_patterns(".venv", ".git", "outputs", "build", "*.egg-info", "__pycache__",
                                                  "multirun", ".pytest_cache"))
    for link in (source / "wsol_bench").iterdir():
        if link.is_symlink():
            link.unlink()
    return source


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, str]:
    """The wheel built from a copy of the checkout (without its untracked import symlinks), and pip's verbose log."""
    out = tmp_path_factory.mktemp("wheel")
    source = _copy_checkout(out / "source")
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation",
                          "--no-index", "-v", "-w", str(out)], check=True, capture_output=True, text=True, timeout=300)
    [path] = list(out.glob("wsol_bench-*.whl"))
    return path, res.stdout + res.stderr


@pytest.fixture(scope="module")
def wheel(built) -> Path:
    return built[0]


@pytest.mark.slow
def test_building_the_wheel_prints_no_package_layout_warning(built):
    log = built[1].lower()
    assert "building wheel" in log  # the backend's own output is in the log (pip -v)
    for warning in ("would be ignored", "importable package", "setuptoolsdeprecationwarning"):
        assert warning not in log, warning


@pytest.mark.slow
def test_wheel_carries_configs_demo_annotations_and_the_console_script(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for conf in (REPO / "conf").rglob("*.yaml"):
        assert f"wsol_bench/conf/{conf.relative_to(REPO / 'conf').as_posix()}" in names, conf
    for xml in (REPO / "data" / "demo" / "annotations").glob("*.xml"):
        assert f"wsol_bench/demo_annotations/{xml.name}" in names, xml
    [entry_points] = [n for n in names if n.endswith("entry_points.txt")]
    assert "wsol-bench = wsol_bench.__main__:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


@pytest.mark.slow
def test_a_non_editable_install_runs_the_demo_outside_the_checkout(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    [site] = list(venv.glob("lib/python*/site-packages"))
    deps = [p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir()]
    (site / "project_deps.pth").write_text("\n".join(deps) + "\n")  # the dependencies, not the checkout
    python = venv / "bin" / "python"
    subprocess.run([python, "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)], check=True,
                   capture_output=True, timeout=300)
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    where = subprocess.run([python, "-c", "import wsol_bench.conf, wsol_bench; print(wsol_bench.__file__)"],
                           cwd=cwd, check=True, capture_output=True, text=True).stdout
    assert str(site) in where and str(REPO) not in where
    res = subprocess.run([venv / "bin" / "wsol-bench", "dataset.limit=1", "tta.crops=1", "segmentation=center",
                          "run.progress=false", "run.figures=0", "hydra.run.dir=run"], cwd=cwd, capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert json.loads((cwd / "run" / "metrics.json").read_text())["n_images"] == 1


def test_version_comes_from_the_installed_metadata():
    import importlib.metadata

    import wsol_bench

    assert wsol_bench.__version__ == importlib.metadata.version("wsol_bench")
    assert "__version__" in dir(wsol_bench)


def test_version_falls_back_to_the_source_tree_then_to_unknown(monkeypatch, tmp_path):
    import importlib.metadata

    import wsol_bench

    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", not_installed)
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert wsol_bench._version() == project["version"]  # an uninstalled checkout: its pyproject.toml
    assert wsol_bench._version(source_root=tmp_path) == "0+unknown"  # neither: a PEP 440 placeholder
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "other"\nversion = "9.9"\n')
    assert wsol_bench._version(source_root=tmp_path) == "0+unknown"  # another project's file is not ours


@pytest.mark.slow
def test_an_editable_install_prints_no_package_layout_warning_and_finds_the_configs(tmp_path):
    source = _copy_checkout(tmp_path / "source")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    [site] = list(venv.glob("lib/python*/site-packages"))
    deps = [p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir()]
    (site / "project_deps.pth").write_text("\n".join(deps) + "\n")
    python = venv / "bin" / "python"
    res = subprocess.run([python, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index", "-v",
                          "-e", str(source)], check=True, capture_output=True, text=True, timeout=300)
    log = (res.stdout + res.stderr).lower()
    assert "would be ignored" not in log and "importable package" not in log
    found = subprocess.run([python, "-c", "import importlib.resources as r; "
                            "print(r.files('wsol_bench.conf').joinpath('hydra/launcher/slurm.yaml').is_file(), "
                            "r.files('wsol_bench.conf.dataset').joinpath('demo.yaml').is_file())"],
                           cwd=tmp_path, check=True, capture_output=True, text=True).stdout
    assert found.split() == ["True", "True"]
