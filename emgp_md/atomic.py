"""Atomic file writes: a temporary file in the same folder, then a rename, never a half-written file.

Every write of a result, state or manifest in the package goes through :func:`atomic_path` (or one
of the helpers built on it). The temporary file is ``.<name>.<random>.tmp`` beside the target, so
a reader never sees a partial file, and the rename (:func:`os.replace`) is atomic on POSIX file
systems. A write that raises (a full disk, a kill) leaves the target as it was and removes its
temporary file; one that the operating system kills outright leaves the temporary file behind, and
:func:`remove_stale_temp_files` clears those when a run (re)starts.

No torch at import: :func:`atomic_torch_save` imports it when called.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
TEMP_GLOB = ".*.tmp"  # the names of the temporary files, as :func:`remove_stale_temp_files` finds them


def temp_beside(path: str | Path) -> Path:
    """A new empty temporary file ``.<name>.*.tmp`` in ``path``'s folder (mode 0666 minus umask).

    The folder is created when missing.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; results are ordinary files
    return Path(tmp)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on a normal exit rename it onto ``path``.

    On an exception the temporary file is removed and ``path`` is left untouched. The body may
    check what it wrote before the rename (raise to keep the original).

    Examples
    --------
    >>> with atomic_path(out / "table.npz") as tmp:   # doctest: +SKIP
    ...     np.savez(tmp, x=x)
    """
    path = Path(path)
    tmp = temp_beside(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (the platform's default encoding, as ``Path.write_text``)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def atomic_write_json(
    path: str | Path, doc: Any, indent: int | None = 2, sort_keys: bool = False, newline: bool = False
) -> None:
    """Write ``json.dumps(doc, indent=indent, sort_keys=sort_keys)`` to ``path`` atomically.

    ``newline`` appends a final line break. The document is serialised before anything is written,
    so a value that is not JSON-able raises ``TypeError`` and leaves ``path`` as it was.
    """
    text = json.dumps(doc, indent=indent, sort_keys=sort_keys) + ("\n" if newline else "")
    atomic_write_text(path, text)


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """``torch.save(obj)`` to ``path`` atomically."""
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def remove_stale_temp_files(folder: str | Path) -> list[Path]:
    """Delete the ``.<name>.*.tmp`` files that an interrupted atomic write left in ``folder``.

    Call it only where no other process is writing into ``folder`` (e.g. when a run starts).
    Returns the removed paths.
    """
    removed = []
    for tmp in sorted(Path(folder).glob(TEMP_GLOB)):
        if tmp.is_file():
            tmp.unlink()
            removed.append(tmp)
    if removed:
        log.info(
            "removed %d temporary file(s) left by an interrupted write: %s",
            len(removed),
            ", ".join(p.name for p in removed),
        )
    return removed
