"""The demo catalogue: fictional experts in the import format, loaded by `concierge demo load`."""

from __future__ import annotations

from importlib.resources import as_file, files
from pathlib import Path


def demo_catalogue_path() -> Path:
    resource = files("knowledge").joinpath("data/demo_experts.jsonl")
    # Package data is a real file for every install this project supports (wheel or editable).
    with as_file(resource) as path:
        return Path(path)
