"""Shared fixtures: the tiny offline checkpoints, built once per test session."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

FAMILY_NAMES = ("qwen2_5_vl", "llama4")


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
