"""Shared fixtures and the GPU tests' command-line options.

Options (they replace environment switches; ``tools/gpu_check.py`` passes them):
``--gpu-real`` (the GPU tests load the real model ids, not the tiny models),
``--gpu-record FILE`` (write what the GPU tests measured there, as JSON) and
``--run-diagnostics`` (also run the tests marked ``diagnostics``, opt-in investigations).
"""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

FAMILY_NAMES = ("qwen2_5_vl", "llama4")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("vlm-tutorial GPU tests")
    group.addoption(
        "--gpu-real", action="store_true", help="GPU tests: the real model ids, not tiny models"
    )
    group.addoption("--gpu-record", metavar="FILE", help="GPU tests: write the measurements here")
    group.addoption(
        "--run-diagnostics", action="store_true", help="also run tests marked diagnostics"
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "diagnostics: an opt-in investigation, run with --run-diagnostics"
    )


@pytest.fixture(scope="session")
def tiny_paths() -> dict[str, str]:
    """Folder of each family's default tiny checkpoint."""
    from vlm_tutorial.offline.tiny import tiny_model_path

    return {name: str(tiny_model_path(name)) for name in FAMILY_NAMES}


@pytest.fixture(scope="session")
def processors(tiny_paths):
    """The real processor class of each family, loaded from its tiny checkpoint."""
    from transformers import AutoProcessor

    return {name: AutoProcessor.from_pretrained(path) for name, path in tiny_paths.items()}


@pytest.fixture(scope="session")
def image():
    """The package's example image."""
    from vlm_tutorial.images import example_image

    return example_image()
