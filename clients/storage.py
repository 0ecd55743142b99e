"""Blob stores: where videos, posters and keyframes live.

``LocalBlobStore`` is the embedded default: files under ``CATWALK_HOME/media``, written
atomically (temp file + rename) so a crash never leaves a half file under a real key.
"""

from __future__ import annotations

import errno
import hashlib
import os
import tempfile
from pathlib import Path

from domain import StoredObject
from errors import StorageError


def _storage_error(exc: OSError, what: str) -> StorageError:
    if exc.errno == errno.ENOSPC:
        return StorageError(f"local disk is full: cannot store {what}")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return StorageError(f"no permission to write {what}")
    return StorageError(f"cannot store {what}: {exc.strerror or exc}")


class LocalBlobStore:
    """Files on this machine's disk, addressed by ``file://`` URLs."""

    name = "local"

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root):
            raise StorageError(f"refusing a key outside the media folder: {key!r}")
        return path

    def put_bytes(self, key: str, data: bytes, content_type: str) -> StoredObject:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise _storage_error(exc, key) from exc
        return StoredObject(
            key=key, size=len(data), content_type=content_type, checksum=hashlib.md5(data).hexdigest()
        )

    def put_file(self, key: str, path: Path, content_type: str) -> StoredObject:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise _storage_error(exc, str(path)) from exc
        stored = self.put_bytes(key, data, content_type)
        head = self.head(key)
        if head is None or head.size != path.stat().st_size:
            raise StorageError(f"stored {key} does not match its source after writing")
        return stored

    def get_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError as exc:
            raise StorageError(f"stored file missing: {key}") from exc
        except OSError as exc:
            raise _storage_error(exc, key) from exc

    def head(self, key: str) -> StoredObject | None:
        path = self._path(key)
        if not path.is_file():
            return None
        return StoredObject(key=key, size=path.stat().st_size, content_type="")

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise _storage_error(exc, key) from exc
        # Tidy empty job folders so "one video file per product" is visible on disk too.
        for parent in path.parents:
            if parent == self.root or not parent.is_relative_to(self.root):
                break
            try:
                parent.rmdir()
            except OSError:
                break

    def url(self, key: str) -> str:
        return self._path(key).as_uri()

    def local_path(self, key: str) -> Path:
        return self._path(key)
