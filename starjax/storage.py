"""Cloud paths (gs://, s3://, az://) for run directories and checkpoints, staged through local files.

A run directory is written by Orbax, SentencePiece, tensorboardX, matplotlib, W&B and plain file
I/O; of these only Orbax writes to object stores itself, and object stores cannot append (a
metrics file, TensorBoard events). So a remote path is mirrored: the commands read and write a
local copy under `~/.cache/starjax/remote/` (`STARJAX_CACHE` moves it), pulled from the bucket
first (a resume on a fresh VM) and pushed back at every checkpoint, iteration and the end; a push
uploads new and changed files and deletes what the run deleted (old checkpoints, pruned
policies). Remote inputs (a checkpoint, a Hugging Face directory, a tokenizer) are pulled once.

The bucket is reached through fsspec (gcsfs, s3fs, adlfs: what etils.epath also uses), so a test
registers a local filesystem under `gs` and runs exactly this code.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Callable

from starjax.errors import ConfigError

PACKAGES = {"gs": "gcsfs", "s3": "s3fs", "az": "adlfs"}
# Directories a push skips: Orbax's checkpoints while it writes them, save_params' before its rename.
UNFINISHED = (".orbax-checkpoint-tmp", ".partial")


def is_remote(path: str | Path | None) -> bool:
    return path is not None and str(path).split("://", 1)[0] in PACKAGES and "://" in str(path)


def cache_root() -> Path:
    return Path(os.environ.get("STARJAX_CACHE", "~/.cache/starjax")).expanduser()


def staging_dir(url: str) -> Path:
    """The local copy of `url`: one per remote path, so a rerun on this machine pulls nothing."""
    scheme, rest = str(url).split("://", 1)
    return cache_root() / "remote" / scheme / rest.strip("/")


def local(path: str | Path) -> Path:
    """A path to read: `path` itself when local (~ expanded), else its pulled local copy."""
    if not is_remote(path):
        return Path(path).expanduser()
    mirror = Mirror(str(path))
    mirror.pull()
    return mirror.local


def parent(path: str | Path) -> str:
    """The parent of a local or remote path, as a string (pathlib would fold gs:// to gs:/)."""
    return str(path).rstrip("/").rsplit("/", 1)[0] if is_remote(path) else str(Path(path).parent)


@functools.cache
def _filesystem(scheme: str):
    import fsspec

    try:
        return fsspec.filesystem(scheme)
    except (ImportError, ValueError) as e:
        raise ConfigError(
            f"{scheme}:// paths need the {PACKAGES[scheme]} package: pip install {PACKAGES[scheme]} ({e})"
        ) from None


def _identity(info: dict) -> str:
    """What changes when a remote file is rewritten (GCS: its generation; S3: its ETag)."""
    return hashlib.sha1(
        json.dumps({k: v for k, v in info.items() if k != "name"}, sort_keys=True, default=str).encode()
    ).hexdigest()


class Mirror:
    """A remote directory (or file) and its local copy. `pull` makes the copy equal the bucket;
    `push` makes the bucket equal the copy. A manifest beside the copy records, per file, the
    remote version and the local size and mtime last synced, so neither re-copies what is equal
    and a copy left on this machine by an older run is refreshed, not trusted."""

    def __init__(self, url: str, local_path: Path | None = None):
        self.url = url.rstrip("/")
        self.local = local_path or staging_dir(self.url)
        self.fs = _filesystem(self.url.split("://", 1)[0])
        self.root = self.fs._strip_protocol(self.url)
        self._manifest = self.local.with_name(self.local.name + ".sync.json")
        try:
            self._synced: dict[str, list] = json.loads(self._manifest.read_text())  # rel -> [remote id, size, mtime_ns]
        except (FileNotFoundError, json.JSONDecodeError):
            self._synced = {}

    def _remote_files(self) -> dict[str, str]:
        """Relative path -> version of every remote file under the root ("" for the root as a file)."""
        if not self.fs.exists(self.root):
            return {}
        if self.fs.isfile(self.root):
            return {"": _identity(self.fs.info(self.root))}
        prefix = self.root.rstrip("/") + "/"
        found = self.fs.find(self.root, detail=True)
        return {p[len(prefix) :]: _identity(i) for p, i in found.items() if p.startswith(prefix) and i["type"] == "file"}

    def _local_files(self) -> dict[str, tuple[int, int]]:
        """Relative path -> (size, mtime_ns) of every finished local file."""
        if self.local.is_file():
            stat = self.local.stat()
            return {"": (stat.st_size, stat.st_mtime_ns)}
        files = {}
        for dirpath, dirnames, filenames in os.walk(self.local):
            dirnames[:] = [d for d in dirnames if not any(mark in d for mark in UNFINISHED)]
            for name in filenames:
                path = Path(dirpath, name)
                try:
                    stat = path.stat()
                except FileNotFoundError:  # removed while we walked (an old checkpoint)
                    continue
                files[path.relative_to(self.local).as_posix()] = (stat.st_size, stat.st_mtime_ns)
        return files

    def _local_path(self, rel: str) -> Path:
        return self.local / rel if rel else self.local

    def _remote_path(self, rel: str) -> str:
        return f"{self.root}/{rel}" if rel else self.root

    def _save_manifest(self) -> None:
        self._manifest.parent.mkdir(parents=True, exist_ok=True)
        self._manifest.write_text(json.dumps(self._synced))

    def pull(self) -> int:
        """Makes the local copy equal the remote one; returns the number of files downloaded."""
        remote, here = self._remote_files(), self._local_files()
        for rel in set(here) - set(remote):
            self._local_path(rel).unlink()
        count = 0
        for rel, version in sorted(remote.items()):
            target = self._local_path(rel)
            if self._synced.get(rel) != [version, *here.get(rel, (-1, -1))]:
                target.parent.mkdir(parents=True, exist_ok=True)
                partial = target.with_name(target.name + ".download")
                self.fs.get_file(self._remote_path(rel), str(partial))
                partial.replace(target)  # a killed download leaves no file that looks complete
                count += 1
            stat = target.stat()
            self._synced[rel] = [version, stat.st_size, stat.st_mtime_ns]
        self._synced = {rel: v for rel, v in self._synced.items() if rel in remote}
        self._save_manifest()
        return count

    def push(self) -> int:
        """Makes the remote copy equal the local one; returns the number of files uploaded."""
        here = self._local_files()
        changed = [rel for rel, stat in sorted(here.items()) if self._synced.get(rel, [None])[1:] != list(stat)]
        folders: set[str] = set()
        for rel in list(changed):
            if (folder := parent(self._remote_path(rel))) not in folders:  # a no-op on buckets, needed on disks
                self.fs.makedirs(folder, exist_ok=True)
                folders.add(folder)
            try:
                self.fs.put_file(str(self._local_path(rel)), self._remote_path(rel))
            except FileNotFoundError:  # deleted since the walk (Orbax pruning an old checkpoint)
                changed.remove(rel)
                del here[rel]
        for rel in sorted(set(self._synced) - set(here)):
            if self.fs.exists(self._remote_path(rel)):
                self.fs.rm_file(self._remote_path(rel))
            del self._synced[rel]
        if changed:
            remote = self._remote_files()
            for rel in changed:
                self._synced[rel] = [remote.get(rel), *here[rel]]
        self._save_manifest()
        return len(changed)


def require_one_process(path: str | Path | None, key: str) -> None:
    """A remote path is staged on one host: with several processes, each would upload its own part."""
    import jax

    if is_remote(path) and jax.process_count() > 1:
        raise ConfigError(
            f"{key}={path} with {jax.process_count()} processes: remote paths are staged on one host; "
            "give every host the bucket mounted (GCS FUSE) as a local path instead"
        )


def new_output_dir(path: str | Path) -> tuple[Path, Callable[[], None]]:
    """A new directory to write at `path` (local or remote): where to write it, and what to call
    once it is complete (a remote one's upload)."""
    taken = ConfigError(f"{str(path)!r} exists and is not empty; give a new output directory")
    if not is_remote(path):
        out = Path(path).expanduser()
        if out.exists() and any(out.iterdir()):
            raise taken
        return out, lambda: None
    mirror = Mirror(str(path))
    if mirror.fs.exists(mirror.root) and (mirror.fs.isfile(mirror.root) or mirror.fs.ls(mirror.root)):
        raise taken
    shutil.rmtree(mirror.local, ignore_errors=True)  # a copy of an output deleted from the bucket since
    mirror.pull()
    return mirror.local, mirror.push
