"""Append-only CSV training logs (one row per epoch; a header when the file is new).

On resume, :func:`drop_epochs_from` removes the rows of epochs that the saved state does not
cover (written after the last checkpoint, before a crash), so no epoch is ever logged twice.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from emgp_md.atomic import atomic_write_text

log = logging.getLogger(__name__)


def append_row(path: Path, fields: Sequence[str], row: dict[str, Any]) -> None:
    """Append ``row`` (keys ⊆ ``fields``) to the CSV at ``path``."""
    new = not path.exists()
    with path.open("a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(fields))
        if new:
            writer.writeheader()
        writer.writerow(row)


def drop_epochs_from(path: Path, first_epoch: int, key: str = "epoch") -> int:
    """Rewrite the CSV at ``path`` (atomically) without the rows whose ``key`` is ``>= first_epoch``.

    Rows whose ``key`` is not an integer (a line cut short by a crash) are dropped as well.
    Returns the number of rows dropped; a missing file is left missing.
    """
    if not path.exists():
        return 0
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        fields, rows = reader.fieldnames, list(reader)
    if fields is None:
        return 0

    def kept(row: dict[str, Any]) -> bool:
        try:
            return int(row[key]) < first_epoch and None not in row.values()  # None: a short row
        except (TypeError, ValueError):
            return False

    keep = [row for row in rows if kept(row)]
    if len(keep) == len(rows):
        return 0
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields)
    writer.writeheader()
    writer.writerows(keep)
    atomic_write_text(path, buffer.getvalue())
    log.info(
        "%s: dropped %d row(s) of epochs >= %d written after the last saved state",
        path,
        len(rows) - len(keep),
        first_epoch,
    )
    return len(rows) - len(keep)
