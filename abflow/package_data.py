"""Files shipped inside the abflow package: SQL, expectation suites, demo definitions.

Found through importlib.resources, never relative to the working directory, so a checkout, an
editable install and an installed wheel read the same files.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def package_path(*parts: str) -> Path:
    """A file or directory inside the installed abflow package, as a filesystem path."""
    resource = files("abflow")
    for part in parts:
        resource = resource / part
    # pip and uv install wheels unpacked (never zipped), so the resource is a real directory entry.
    return Path(str(resource))
