"""Atomic commits for an HDF5 file: a page overlay and a redo journal (SQLite's idea).

HDF5 is not crash-safe on its own: a flush rewrites metadata in place (superblock,
B-tree nodes, heaps) through many separate writes, and a writer killed between them
leaves a file HDF5 refuses to open ("truncated file") or a group index that drops
trajectories.  DESIGN.md asks that a collection killed at any moment leave a readable
file holding every finished trajectory, so the writer hands HDF5 a file-like object
(h5py's ``fileobj`` driver) that keeps every write in memory until HDF5 flushes, then
commits them in an order a crash cannot break:

1. pages beyond the committed end of the file (new trajectory data and headers) are
   written in place: nothing committed refers to them yet;
2. every page that overwrites committed bytes goes into ``<file>-journal`` (full page
   images, the new file size, a SHA-256 over all of it), made durable;
3. those pages are written into the file, and the file is cut or grown to its new size;
4. the journal is emptied.

A crash before the journal is whole leaves the committed file untouched; after it, the
journal holds the new state.  ``JournalView`` lets a read-only reader see that new
state without modifying anything; the next writer replays the journal into the file.
With ``fsync`` each step is also ordered on disk, so power loss is covered too.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import struct
from pathlib import Path

PAGE = 4096
MAGIC = b"dexndm-journal\x00\x01"
_HEAD = struct.Struct("<QQ")        # new file size, number of pages
_ENTRY = struct.Struct("<Q")        # page number, followed by PAGE bytes


def journal_path(path: str | os.PathLike) -> Path:
    """Where the journal of ``path`` lives: ``<path>-journal``."""
    path = Path(path)
    return path.with_name(path.name + "-journal")


def read_journal(path: str | os.PathLike) -> tuple[int, dict[int, bytes]] | None:
    """(new size, {page: bytes}) of a whole journal; None when absent, empty or torn."""
    try:
        blob = journal_path(path).read_bytes()
    except FileNotFoundError:
        return None
    if len(blob) < len(MAGIC) + _HEAD.size + 32 or not blob.startswith(MAGIC):
        return None
    body, digest = blob[:-32], blob[-32:]
    if hashlib.sha256(body).digest() != digest:
        return None                                  # torn: the crash came before it was whole
    size, count = _HEAD.unpack_from(body, len(MAGIC))
    pages, at = {}, len(MAGIC) + _HEAD.size
    for _ in range(count):
        (page,) = _ENTRY.unpack_from(body, at)
        pages[page] = body[at + _ENTRY.size: at + _ENTRY.size + PAGE]
        at += _ENTRY.size + PAGE
    return size, pages


def lock(fd: int, exclusive: bool, path: str | os.PathLike) -> None:
    """flock the file as HDF5 does, so h5py readers and writers see this lock."""
    try:
        fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
            holder = "another handle has it open" if exclusive else "another process has it open for writing"
            raise OSError(exc.errno, f"unable to lock file {path}: {holder}") from exc
        raise


class _Overlay:
    """Seekable file-like view of ``fd`` with pages replaced from ``self._pages``; [0, size)."""

    def __init__(self, fd: int, size: int, pages: dict[int, bytearray | bytes], valid: int):
        self._fd, self._size, self._pages, self._pos = fd, size, pages, 0
        self._valid = valid         # bytes of fd at or beyond this read as zeros

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: self._size}[whence]
        self._pos = base + offset
        return self._pos

    def tell(self) -> int:
        return self._pos

    def _base(self, start: int, n: int) -> bytes:
        """Bytes [start, start+n) of the file on disk, zeros beyond ``valid``."""
        have = max(0, min(n, self._valid - start))
        data = os.pread(self._fd, have, start) if have else b""
        return data + bytes(n - len(data))

    def readinto(self, buf) -> int:
        out = memoryview(buf).cast("B")
        n, pos, off = len(out), self._pos, 0
        while off < n:
            page, o = divmod(pos + off, PAGE)
            if page in self._pages:
                k = min(PAGE - o, n - off)
                out[off:off + k] = self._pages[page][o:o + k]
            else:                   # a run of clean pages: one read
                end = off + min(PAGE - o, n - off)
                while end < n and (pos + end) // PAGE not in self._pages:
                    end = min(n, end + PAGE)
                k = end - off
                out[off:end] = self._base(pos + off, k)
            off += k
        self._pos += n
        return n

    def read(self, n: int = -1) -> bytes:
        n = max(0, self._size - self._pos) if n is None or n < 0 else n
        buf = bytearray(n)
        self.readinto(buf)
        return bytes(buf)


class JournalView(_Overlay):
    """Read-only view of a file with its whole journal applied (after a crash mid-commit)."""

    def __init__(self, path: str | os.PathLike, journal: tuple[int, dict[int, bytes]], locking: bool = True):
        fd = os.open(path, os.O_RDONLY)
        try:
            if locking:
                lock(fd, False, path)
        except BaseException:
            os.close(fd)
            raise
        size, pages = journal
        super().__init__(fd, size, dict(pages), valid=os.fstat(fd).st_size)

    def writable(self) -> bool:
        return False

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class JournaledFile(_Overlay):
    """Read-write file-like object for h5py whose writes reach disk only at ``flush``, atomically.

    Holds an exclusive flock on the file while open (h5py readers then report it busy)
    and replays a journal a crashed writer left before anything else.
    """

    def __init__(self, path: str | os.PathLike, fsync: bool = True):
        self.path, self.fsync = Path(path), fsync
        fd = os.open(self.path, os.O_RDWR)
        try:
            lock(fd, True, self.path)
            self._jfd = -1
            self._fd = fd
            self._recover()
        except BaseException:
            os.close(fd)
            raise
        size = os.fstat(fd).st_size
        super().__init__(fd, size, {}, valid=size)
        self._committed = size

    def writable(self) -> bool:
        return True

    def _open_journal(self) -> None:
        if self._jfd < 0:
            jpath = journal_path(self.path)
            self._jfd = os.open(jpath, os.O_RDWR | os.O_CREAT, 0o644)
            if self.fsync:                           # the journal's name must survive power loss too
                dfd = os.open(jpath.parent, os.O_RDONLY)
                try:
                    os.fsync(dfd)
                finally:
                    os.close(dfd)

    def _recover(self) -> None:
        """Finish the commit a killed writer left in the journal (replay is idempotent)."""
        journal = read_journal(self.path)
        if journal is not None:
            size, pages = journal
            for page, data in sorted(pages.items()):
                _pwrite_all(self._fd, data[:max(0, min(PAGE, size - page * PAGE))], page * PAGE)
            os.ftruncate(self._fd, size)
            if self.fsync:
                os.fsync(self._fd)
        if journal_path(self.path).exists():
            self._open_journal()
            self._empty_journal()

    def _empty_journal(self) -> None:
        os.ftruncate(self._jfd, 0)
        if self.fsync:
            os.fsync(self._jfd)

    def write(self, buf) -> int:
        data = memoryview(buf).cast("B")
        n, pos, off = len(data), self._pos, 0
        while off < n:
            page, o = divmod(pos + off, PAGE)
            k = min(PAGE - o, n - off)
            current = self._pages.get(page)
            if current is None:
                current = bytearray(PAGE) if (o == 0 and k == PAGE) else bytearray(self._base(page * PAGE, PAGE))
                self._pages[page] = current
            current[o:o + k] = data[off:off + k]
            off += k
        self._pos += n
        self._size = max(self._size, self._pos)
        return n

    def truncate(self, size: int | None = None) -> int:
        size = self._pos if size is None else int(size)
        if size < self._size:
            for page in [p for p in self._pages if p * PAGE >= size]:
                del self._pages[page]
            page, o = divmod(size, PAGE)
            if o and page in self._pages:
                self._pages[page][o:] = bytes(PAGE - o)
            self._valid = min(self._valid, size)    # bytes on disk from here on read as zeros
        self._size = size
        return size

    def flush(self) -> None:
        """Commit every write since the last flush atomically (see the module docstring)."""
        if self._fd < 0 or (not self._pages and self._size == self._committed == self._valid):
            return
        size = self._size
        keep = {p: d for p, d in self._pages.items() if p * PAGE < size}
        # Committed bytes a truncation cut off read as zeros; where the file is longer again
        # they must be zeros on disk too, written like any other page.
        for p in range(self._valid // PAGE, -(-min(self._committed, size) // PAGE)):
            if p not in keep:
                keep[p] = self._base(p * PAGE, PAGE)
        fresh = sorted(p for p in keep if p * PAGE >= self._committed)
        old = sorted(p for p in keep if p * PAGE < self._committed)
        for start, run in _runs(fresh):              # 1. new space, unreferenced until step 3
            blob = b"".join(bytes(keep[p]) for p in run)
            _pwrite_all(self._fd, blob[:size - start * PAGE], start * PAGE)
        journaled = bool(old) or size < self._committed
        if journaled:
            if self.fsync:
                os.fsync(self._fd)
            body = bytearray(MAGIC + _HEAD.pack(size, len(old)))     # 2. the journal
            for p in old:
                body += _ENTRY.pack(p) + bytes(keep[p])
            body += hashlib.sha256(body).digest()
            self._open_journal()
            os.ftruncate(self._jfd, 0)
            _pwrite_all(self._jfd, body, 0)
            if self.fsync:
                os.fsync(self._jfd)
            for p in old:                            # 3. in place
                _pwrite_all(self._fd, bytes(keep[p])[:size - p * PAGE], p * PAGE)
        os.ftruncate(self._fd, size)
        if self.fsync:
            os.fsync(self._fd)
        if journaled:
            self._empty_journal()                    # 4. done
        self._pages.clear()
        self._committed = self._valid = size

    def close(self) -> None:
        """Commit, remove the journal, release the lock.

        If the last commit fails, the journal stays: the next writer replays it.
        """
        if self._fd < 0:
            return
        committed = False
        try:
            self.flush()
            committed = True
        finally:
            if self._jfd >= 0:
                os.close(self._jfd)
                self._jfd = -1
            if committed:
                journal_path(self.path).unlink(missing_ok=True)
            os.close(self._fd)
            self._fd = -1


def _pwrite_all(fd: int, data: bytes | bytearray, offset: int) -> None:
    """pwrite until every byte is written (a short write is retried, an error raised)."""
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n


def _runs(pages: list[int]) -> list[tuple[int, list[int]]]:
    """Consecutive page numbers grouped: [(first, [first, first+1, ...]), ...]."""
    runs: list[tuple[int, list[int]]] = []
    for p in pages:
        if runs and runs[-1][1][-1] == p - 1:
            runs[-1][1].append(p)
        else:
            runs.append((p, [p]))
    return runs
