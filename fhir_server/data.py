"""Where the project's data folders are: profiles/, terminology/, mappings/, pathways/.

One locator for every module that reads the project's own FHIR JSON data.
"""

from __future__ import annotations

from pathlib import Path

#: The folders of FHIR JSON data the server reads (and the package build ships).
DATA_FOLDERS = ("profiles", "terminology", "mappings", "pathways")

_SOURCE_ROOT = Path(__file__).resolve().parents[1]


def data_root() -> Path:
    """The directory holding the data folders."""
    return _SOURCE_ROOT


def data_folder(name: str) -> Path:
    """One data folder (``profiles``, ``terminology``, ``mappings`` or ``pathways``)."""
    if name not in DATA_FOLDERS:
        raise ValueError(f"unknown data folder {name!r}")
    return data_root() / name


def data_folders() -> list[Path]:
    """Every data folder, in load order."""
    return [data_folder(name) for name in DATA_FOLDERS]
