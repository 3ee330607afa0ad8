"""Packaging: pins, extras, environment.yml, and the README's opening commands."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
ENVIRONMENT = yaml.safe_load((ROOT / "environment.yml").read_text())


def _pip_section() -> list[str]:
    for dep in ENVIRONMENT["dependencies"]:
        if isinstance(dep, dict) and "pip" in dep:
            return dep["pip"]
    raise AssertionError("environment.yml has no pip section")


def test_extras_are_the_documented_three():
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert set(extras) == {"test", "docs", "gpu"}
    test_names = {re.split(r"[<>=\[ ]", d)[0].lower() for d in extras["test"]}
    assert {"pytest", "nbval", "papermill", "nbclient", "nbformat", "ipykernel",
            "nest_asyncio", "jupyter"} <= test_names
    assert "sglang==0.5.17" in extras["gpu"]


def test_transformers_is_pinned_to_sglangs_pin_everywhere():
    assert "transformers==5.12.1" in PYPROJECT["project"]["dependencies"]
    assert "transformers==5.12.1" in _pip_section()


def test_environment_yml_is_a_python_3_12_gpu_environment():
    assert ENVIRONMENT["name"] == "vlm-tutorial"
    assert "python=3.12" in ENVIRONMENT["dependencies"]
    pip = _pip_section()
    assert {"sglang==0.5.17", "torch==2.11.0", "jupyter"} <= set(pip)
    assert any(p.startswith("-e .") for p in pip), "the package itself is installed"


@pytest.mark.parametrize(
    "pin", [p for p in _pip_section() if not p.startswith("-e")], ids=lambda p: p
)
def test_environment_pins_resolve_for_python_3_12_on_linux(tmp_path, pin):
    """Each pip requirement of environment.yml has a cp312 manylinux (or pure) wheel on the registry."""
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps", "--ignore-installed",
         "--quiet", "--only-binary=:all:", "--python-version", "3.12", "--implementation", "cp",
         "--platform", "manylinux_2_34_x86_64", "--platform", "manylinux_2_28_x86_64",
         "--platform", "manylinux_2_17_x86_64", "--platform", "manylinux2014_x86_64",
         "--platform", "any", "--target", str(tmp_path / "t"), pin],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_readme_opens_with_the_main_job_and_the_test_command():
    text = (ROOT / "README.md").read_text()
    first_block = re.search(r"```bash\n(.*?)```", text, re.S)
    assert first_block and text.index("```bash") < 400
    commands = [line.split("#")[0].strip() for line in first_block.group(1).splitlines()]
    assert commands == ["make notebooks", "make test"]


def test_ci_runs_the_readmes_test_command():
    assert re.search(r"^make test$", (ROOT / ".ci/run").read_text(), re.M)
