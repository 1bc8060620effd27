"""Packaging step pyproject.toml cannot say: the wheel carries the top-level data folders.

``profiles/``, ``terminology/``, ``mappings/``, ``pathways/`` and ``measures/`` stay at the repository's top level;
the build copies them into the wheel as ``fhir_server/_data/<folder>`` (package data, found by
:mod:`fhir_server.data`). An editable install reads them where they are.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

DATA_FOLDERS = ("profiles", "terminology", "mappings", "pathways", "measures")  # as fhir_server.data.DATA_FOLDERS


class BuildPyWithData(build_py):
    """build_py, then the data folders copied under ``fhir_server/_data``."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads the folders in the source tree
        root = Path(__file__).resolve().parent
        for folder in DATA_FOLDERS:
            source = root / folder
            if not source.is_dir():
                raise SystemExit(f"data folder missing: {source}")
            self.copy_tree(str(source), str(Path(self.build_lib) / "fhir_server" / "_data" / folder))


setup(cmdclass={"build_py": BuildPyWithData})
