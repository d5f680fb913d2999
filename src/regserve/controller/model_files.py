"""Where regserve keeps its local copy of a registered version's files.

One function names the place: the controller downloads there, adopts workers that load from
there, and nothing else computes it. The key says which registered version the files are:

- the model's folder is its name made safe for a path (letters, digits, ``.``, ``_``, ``-``)
  plus a digest of the exact name, so ``a b``, ``a_b`` and ``a%20b`` never share one and no
  path holds a ``%`` (MLflow's loader URL-decodes local paths, so ``a%20b`` would load ``a b``).
  When the registered model is deleted (or renamed, or created anew) the controller removes it;
- the version's folder is its number plus a digest of its creation time, source and run:
  version 1 of a model deleted and created again under the same name is another folder, so
  it can never be answered by the old model's files.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from regserve.registry.models import VersionInfo

__all__ = ["local_model_folder", "local_model_path"]

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_READABLE_PART = 40


def local_model_path(models_dir: Path, version: VersionInfo) -> Path:
    """The directory holding regserve's copy of ``version``'s files (may not exist yet)."""
    return local_model_folder(models_dir, version.name) / _version_folder(version)


def local_model_folder(models_dir: Path, name: str) -> Path:
    """The directory holding every copy of the versions of the model named ``name``
    (removed with it when the registered model is deleted)."""
    readable = _UNSAFE.sub("_", name)[:_READABLE_PART]
    return models_dir / f"{readable}-{_digest(name)}"


def _version_folder(version: VersionInfo) -> str:
    files = f"{version.creation_timestamp}\n{version.source}\n{version.run_id or ''}"
    return f"{version.version}-{_digest(files)}"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:12]
