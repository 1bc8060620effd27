"""Where the project's data folders are: profiles/, terminology/, mappings/, pathways/, measures/.

One locator for every module that reads the project's own FHIR JSON data. The folders live at the
repository's top level; the wheel carries them as package data (``fhir_server/_data/<folder>``, copied
there by ``setup.py``), and a source checkout (editable install) reads them where they are. A deployment
may point the ``data_dir`` setting (``FHIR_SERVER_DATA_DIR``, ``--data-dir``) at another directory
holding the same folders; the composition root passes that directory on, and the functions below take
it as ``data_dir`` (None: the shipped data).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

#: The folders of FHIR JSON data the server reads (and the package build ships).
DATA_FOLDERS = ("profiles", "terminology", "mappings", "pathways", "measures")

_SOURCE_ROOT = Path(__file__).resolve().parents[1]


def shipped_data_root() -> Path:
    """The data shipped with the code: the installed package's ``_data``, else the source checkout."""
    packaged = Path(str(resources.files("fhir_server") / "_data"))
    return packaged if packaged.is_dir() else _SOURCE_ROOT


def data_root(data_dir: str | Path | None = None) -> Path:
    """The directory holding the data folders: ``data_dir`` when given, else the shipped data."""
    return Path(data_dir).expanduser() if data_dir else shipped_data_root()


def data_folder(name: str, data_dir: str | Path | None = None) -> Path:
    """One data folder (``profiles``, ``terminology``, ``mappings``, ``pathways`` or ``measures``)."""
    if name not in DATA_FOLDERS:
        raise ValueError(f"unknown data folder {name!r}")
    return data_root(data_dir) / name


def data_folders(data_dir: str | Path | None = None) -> list[Path]:
    """Every data folder, in load order."""
    return [data_folder(name, data_dir) for name in DATA_FOLDERS]


def require_data_folders(data_dir: str | Path | None = None) -> list[Path]:
    """Every data folder; raises FileNotFoundError naming the directory when one is missing."""
    folders = data_folders(data_dir)
    missing = [folder.name for folder in folders if not folder.is_dir()]
    if missing:
        raise FileNotFoundError(f"data folders {', '.join(missing)} not found in {data_root(data_dir)}")
    return folders
