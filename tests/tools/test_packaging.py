"""Packaging: pins, extras, environment.yml, and the README's opening commands."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
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
    assert {
        "pytest",
        "nbval",
        "papermill",
        "nbclient",
        "nbformat",
        "ipykernel",
        "nest_asyncio",
        "jupyter",
    } <= test_names
    assert "sglang==0.5.17" in extras["gpu"]


def test_license_is_an_spdx_expression_that_the_build_backend_supports():
    # A TOML table or a license classifier makes setuptools warn on every build.
    assert isinstance(PYPROJECT["project"]["license"], str)
    assert not [c for c in PYPROJECT["project"]["classifiers"] if c.startswith("License ::")]
    assert "setuptools>=77" in PYPROJECT["build-system"]["requires"]  # PEP 639 support


def test_transformers_is_pinned_to_sglangs_pin_everywhere():
    assert "transformers==5.12.1" in PYPROJECT["project"]["dependencies"]
    assert "transformers==5.12.1" in _pip_section()


def test_environment_yml_is_a_python_3_12_gpu_environment():
    assert ENVIRONMENT["name"] == "vlm-tutorial"
    assert "python=3.12" in ENVIRONMENT["dependencies"]
    pip = _pip_section()
    assert {"sglang==0.5.17", "torch==2.11.0", "jupyter"} <= set(pip)
    assert any(p.startswith("-e .") for p in pip), "the package itself is installed"


@pytest.mark.registry
@pytest.mark.parametrize(
    "pin", [p for p in _pip_section() if not p.startswith("-e")], ids=lambda p: p
)
def test_environment_pins_resolve_for_python_3_12_on_linux(tmp_path, pin):
    """Each pip requirement of environment.yml has a cp312 manylinux (or pure) wheel on the registry.

    Asks the registry, so it is left out of the default suite; CI runs it (``.ci/run``).
    """
    platforms = ["manylinux_2_34_x86_64", "manylinux_2_28_x86_64", "manylinux_2_17_x86_64",
                 "manylinux2014_x86_64", "any"]  # fmt: skip
    cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps", "--ignore-installed"]
    cmd += ["--quiet", "--only-binary=:all:", "--python-version", "3.12", "--implementation", "cp"]
    for platform in platforms:
        cmd += ["--platform", platform]
    cmd += ["--target", str(tmp_path / "t"), pin]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_readme_opens_with_the_main_job_and_the_test_command():
    text = (ROOT / "README.md").read_text()
    first_block = re.search(r"```bash\n(.*?)```", text, re.S)
    assert first_block and text.index("```bash") < 400
    commands = [line.split("#")[0].strip() for line in first_block.group(1).splitlines()]
    assert commands == ["make notebooks", "make test"]


def test_ci_runs_the_readmes_test_command():
    assert re.search(r"^make test$", (ROOT / ".ci/run").read_text(), re.M)


def _ci_environment() -> dict[str, str]:
    """The variables .ci/run exports, as the shell would set them."""
    text = (ROOT / ".ci/run").read_text()
    found = {}
    for line in text.splitlines():
        match = re.match(r"\s*export ([A-Z_]+)=(.*)$", line)
        if match:
            found[match[1]] = " ".join(shlex.split(match[2]))
    return found


def _collected(env: dict[str, str]) -> list[str]:
    cmd = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"]
    cmd.append("tests/tools/test_packaging.py")
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return [line for line in proc.stdout.splitlines() if "::" in line]


def test_default_suite_leaves_out_the_registry_tests_and_ci_runs_them():
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"}
    default = _collected(env)
    assert default and not any("pins_resolve" in test for test in default)
    ci = _collected({**env, "PYTEST_ADDOPTS": _ci_environment()["PYTEST_ADDOPTS"]})
    registry = [test for test in ci if "pins_resolve" in test]
    assert len(registry) == len([p for p in _pip_section() if not p.startswith("-e")])
    assert set(default) <= set(ci)


def test_no_page_tells_users_to_run_the_retired_huggingface_cli():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    pages += sorted((ROOT / "notebooks").glob("*.ipynb"))
    pages = [p for p in pages if "_build" not in p.parts]
    assert not [str(p.relative_to(ROOT)) for p in pages if "huggingface-cli" in p.read_text()]
    for page in ("README.md", "docs/install.md", "docs/gpu.md"):
        assert "hf auth login" in (ROOT / page).read_text(), page


def test_readme_layout_names_every_module():
    lines = (ROOT / "README.md").read_text().splitlines()
    row = next(line for line in lines if line.startswith("| `vlm_tutorial/` |"))
    listed = set(re.findall(r"`(\w+)`", row))
    package = ROOT / "vlm_tutorial"
    modules = {p.stem for p in package.glob("*.py") if not p.stem.startswith("_")}
    assert modules <= listed, f"not in the README's layout table: {sorted(modules - listed)}"
    for sub in (p.name for p in package.iterdir() if (p / "__init__.py").is_file()):
        assert any(line.startswith(f"| `vlm_tutorial/{sub}/` |") for line in lines), sub


def test_readme_presets_exist_for_the_families_it_names():
    from vlm_tutorial.offline.tiny.presets import PRESETS

    named = set(re.findall(r"--preset (\w[\w-]*)", (ROOT / "README.md").read_text()))
    every = set().union(*(set(p) for p in PRESETS.values()))
    assert named <= every, sorted(named - every)
