"""Files, in one place: the SHA-256 of a file's bytes names a checkpoint, dataset or bundle in
every manifest, card, cache key and provenance record of dexndm; ``atomic_path`` is how every
checkpoint, cache, table and curve is written whole or not at all."""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same folder and suffix) to write; when the block
    ends without error it is renamed onto ``path``, otherwise removed.  Readers see the old file or
    the new one, never part of one, and a crash leaves the old file whole.  Creates the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 (hex) of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
