"""The test suite keeps out of the user's own files (issue 11, item 6)."""

import os
import tempfile
from pathlib import Path


def test_regression_the_test_suite_writes_into_the_users_hugging_face_cache():
    import datasets.config
    import huggingface_hub.constants

    home = Path(os.environ["HF_HOME"])
    assert home.parent == Path(tempfile.gettempdir()) and home.name.startswith("rfai-tests-")
    assert home != Path.home() / ".cache" / "huggingface"
    for cache in (datasets.config.HF_DATASETS_CACHE, huggingface_hub.constants.HF_HUB_CACHE):
        assert Path(cache).is_relative_to(home), cache
