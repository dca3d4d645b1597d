"""Model checkpoints: the weights together with the log position they have learned up to.

One file per checkpoint, ``model-<version>.ckpt``: a JSON header line, then the VW model
bytes. Written atomically (temporary file, fsync, rename, fsync of the folder), so after a
crash the newest checkpoint file is always complete. Learning resumes at
``position + 1`` (a ``closed_seq`` of the decision log): nothing is lost and, because
whatever was learned after the checkpoint is not in its weights, nothing is learned twice.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from bandit.errors import StorageError

_NAME = re.compile(r"model-(\d{8})\.ckpt$")


@dataclass(frozen=True, slots=True)
class Checkpoint:
    version: int
    position: int
    """The last ``closed_seq`` whose decision is in the weights."""
    learned: int
    """How many decisions the weights have learned in total."""
    vw_args: list[str]
    created_at: float
    model: bytes
    restored_from: int = 0
    """A rollback's copy: the version whose model and position this checkpoint restores."""

    @property
    def model_version(self) -> str:
        return f"v{self.version}"


class CheckpointStore:
    """Checkpoint files in one folder; keeps the newest ``keep``."""

    def __init__(self, folder: Path, keep: int = 5) -> None:
        self.folder = folder
        self.keep = keep
        folder.mkdir(parents=True, exist_ok=True)

    def _files(self) -> list[tuple[int, Path]]:
        out = []
        for p in self.folder.iterdir():
            m = _NAME.match(p.name)
            if m:
                out.append((int(m.group(1)), p))
        return sorted(out)

    def latest(self) -> Checkpoint | None:
        files = self._files()
        if not files:
            return None
        return read_checkpoint(files[-1][1])

    def versions(self) -> list[int]:
        """The kept checkpoints' versions, oldest first."""
        return [v for v, _ in self._files()]

    def oldest_position(self) -> int:
        """The lowest log position of the kept checkpoints (0 when there is none): every
        decision closed after it may still be learned again, by a rollback. Reads only the
        files' header lines."""
        positions = []
        for _, path in self._files():
            try:
                with open(path, "rb") as f:
                    positions.append(int(json.loads(f.readline())["position"]))
            except (OSError, ValueError, KeyError, TypeError):
                return 0  # unreadable (being pruned, say): keep everything this time
        return min(positions, default=0)

    def read(self, version: int) -> Checkpoint:
        for v, path in self._files():
            if v == version:
                return read_checkpoint(path)
        raise StorageError(f"no checkpoint v{version} in {self.folder} (kept: {self.versions()})")

    def rollback(self, version: int, now: float) -> Checkpoint:
        """Make the kept checkpoint ``version`` the newest again, as a new version (nothing is
        deleted: the later checkpoints stay until ``keep`` prunes them). A service started on
        this folder then loads its model and resumes learning at its position, so decisions
        closed since are learned again (voided ones skipped, corrected rewards used)."""
        old = self.read(version)
        latest = self.versions()[-1]
        restored = Checkpoint(
            version=latest + 1,
            position=old.position,
            learned=old.learned,
            vw_args=list(old.vw_args),
            created_at=now,
            model=old.model,
            restored_from=old.version,
        )
        self.save(restored)
        return restored

    def save(self, ckpt: Checkpoint) -> Path:
        path = self.folder / f"model-{ckpt.version:08d}.ckpt"
        tmp = path.with_suffix(".tmp")
        header = {k: v for k, v in asdict(ckpt).items() if k != "model"}
        try:
            with open(tmp, "wb") as f:
                f.write(json.dumps(header).encode() + b"\n")
                f.write(ckpt.model)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
            dir_fd = os.open(self.folder, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            raise StorageError(f"cannot write checkpoint {path}: {exc}") from exc
        for _, old in self._files()[: -self.keep]:
            old.unlink(missing_ok=True)
        return path


def read_checkpoint(path: Path) -> Checkpoint:
    """Read one checkpoint file (also usable on a copy, e.g. an MLflow artifact)."""
    try:
        data = path.read_bytes()
        head, _, model = data.partition(b"\n")
        meta = json.loads(head)
        return Checkpoint(model=model, **meta)
    except (OSError, ValueError, TypeError) as exc:
        raise StorageError(f"cannot read checkpoint {path}: {exc}") from exc
