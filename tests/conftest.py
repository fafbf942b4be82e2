"""Shared fixtures. Every test runs offline on CPU; the model is the tiny one built here."""

import os
import shutil
import tempfile

# Set before anything imports huggingface_hub or transformers, which read these at import:
# a test that would reach the hub fails at once instead of hanging on the network, and
# tokenizers does not warn (or deadlock) when a test forks a process after it has run.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
# The suite never writes into the user's Hugging Face cache (`datasets.load_dataset` of the
# tests' dataset folders caches their rows there): one private cache per test session.
os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="rfai-tests-hf-home-")

from pathlib import Path

import pytest

from rfai.tiny_model import build_tiny_model

# The modules that train for many steps, longest first. `make test` runs the suite on every
# core (pytest-xdist, one module per worker at a time): started first, they run beside the
# many short tests instead of after them, alone on one core.
LONG_MODULES = (
    "test_distill.py",
    "test_learning_pipeline.py",
    "test_resume.py",
    "test_learning.py",
)


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONG_MODULES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.fixture(scope="session", autouse=True)
def _private_hugging_face_home():
    """Removes the session's private HF_HOME (set at the top of this file) at the end."""
    yield
    shutil.rmtree(os.environ["HF_HOME"], ignore_errors=True)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Absolute path of a tiny random Qwen2 model folder (seed 0, default sizes).

    Built once per session (once per worker under pytest-xdist) and shared by every test
    that asks for it, so treat it as read-only: a test that writes next to the model
    (adapters, a fused copy) copies it first with `shutil.copytree`. File permissions
    cannot enforce this, as CI containers often run tests as root.
    """
    model_dir = build_tiny_model(tmp_path_factory.mktemp("tiny_model") / "model", seed=0)
    # Fail here, naming the folder, rather than in whichever test happens to load it first.
    missing = [
        name
        for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")
        if not (model_dir / name).is_file()
    ]
    if missing:
        raise RuntimeError(f"tiny model build in {model_dir} did not write {missing}")
    return model_dir
