"""Load a bundled task's JSON-lines file for lm-eval (``custom_dataset`` keeps paths install-relative)."""

from pathlib import Path

import datasets

DATA_DIR = Path(__file__).parent / "data"


def load(data_file: str, **_metadata) -> datasets.DatasetDict:
    """Read ``data/<data_file>`` through the real datasets json loader as the test split."""
    path = DATA_DIR / data_file
    if not path.is_file():
        raise FileNotFoundError(f"bundled task data {path} is missing; reinstall effbench")
    return datasets.load_dataset("json", data_files={"test": str(path)})
