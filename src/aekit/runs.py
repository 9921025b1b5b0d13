"""A run is a folder: config, checkpoints committed as generations, views of the newest one, figures.

    RUN/config.json                 everything needed to rebuild the model (RunConfig), with its own SHA-256
    RUN/checkpoint/gen-00000007/    one generation = one checkpoint, complete or absent:
        weights.safetensors           the model's state dict at the checkpoint's step
        best.safetensors              the weights with the best validation loss so far (hard link when unchanged)
        training.safetensors          optimizer tensors, RNG states, epoch sums, the model's training buffers
        training.json                 step, history, best, optimizer/scheduler settings, settings changes
        MANIFEST.json                 written last: SHA-256 and size of every file above, the step
    RUN/model.safetensors           the newest generation's best weights   (views: hard links, refreshed
    RUN/model-last.safetensors      its weights at the last checkpoint      after each commit and at resume;
    RUN/metrics.jsonl               one JSON object per epoch               aekit itself reads the generation)
    RUN/tb/                         TensorBoard events
    RUN/*.png                       figures

**Crash consistency.** A generation is written into a hidden temporary folder, every file fsync'd,
the manifest last, and the folder then renamed into place: a generation is either complete or not
there, and a kill at any moment leaves the newest complete generation untouched. Resume loads that
generation, so weights, optimizer state, RNG and epoch position always come from one step.

**Integrity.** Readers verify the manifest's checksums before using a generation; weights files also
carry the SHA-256 of their tensors in their safetensors metadata and config.json its own, so a file
copied out of a run verifies on its own. A mismatch names the file and refuses.

**Safety.** Only safetensors and JSON are ever read (nothing that executes code on load). A run being
trained holds an advisory lock on its folder (``flock``; released by the kernel when the process dies),
so a second training into it refuses. Files are created with the user's umask.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import math
import os
import shutil
import socket
import struct
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from .config import RunConfig
from .errors import AekitError

CONFIG = "config.json"
BEST = "model.safetensors"
LAST = "model-last.safetensors"
METRICS = "metrics.jsonl"
CHECKPOINTS = "checkpoint"
LOCK_INFO = ".lock-info"

GEN_WEIGHTS = "weights.safetensors"
GEN_BEST = "best.safetensors"
GEN_TENSORS = "training.safetensors"
GEN_STATE = "training.json"
MANIFEST = "MANIFEST.json"
FORMAT = 1
KEEP_GENERATIONS = 2  # the newest and the one before it: a reader of the older one is never cut off

_DIGEST_KEY = "aekit.sha256"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()


# ----------------------------------------------------------------------------- atomic writes
def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, write: Callable[[io.BufferedWriter], None]) -> None:
    """Write through a temporary file in the same folder, fsync, then rename over ``path``.

    The file gets the mode a plain ``open`` would give it (0666 less the umask), not mkstemp's 0600.
    OSErrors (unwritable folder, full disk) become one-line AekitErrors; the target is untouched.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise write_error(path, e) from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fchmod(f.fileno(), _FILE_MODE)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        _remove_quietly(tmp)
        raise write_error(path, e) from None
    except BaseException:
        _remove_quietly(tmp)
        raise


def _remove_quietly(path) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def write_error(path: Path, e: OSError) -> AekitError:
    """One line for an OSError while writing ``path``, with the fix."""
    if e.errno == errno.ENOSPC:
        return AekitError(f"the disk is full: cannot write {path}; free some space and run the command again")
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return AekitError(f"cannot write {path}: {e.strerror.lower()}; choose a folder you can write to")
    return AekitError(f"cannot write {path}: {e.strerror or e}")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


# ----------------------------------------------------------------------------- self-verifying files
def _canonical(d: dict) -> bytes:
    return json.dumps(d, sort_keys=True, separators=(",", ":")).encode()


def checked_json_text(obj: dict) -> str:
    """JSON of ``obj`` with, under "aekit", the SHA-256 of its canonical form (see :func:`read_checked_json`)."""
    return json.dumps({**obj, "aekit": {"format": FORMAT, "sha256": hashlib.sha256(_canonical(obj)).hexdigest()}},
                      indent=2) + "\n"


def write_checked_json(path: Path, obj: dict) -> None:
    atomic_write_text(path, checked_json_text(obj))


def read_checked_json(path: Path, fix: str) -> dict:
    """A JSON object written by :func:`write_checked_json`, verified; ``fix`` says what to do when it is not."""
    path = Path(path)
    try:
        d = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise AekitError(f"{path} is corrupt (not valid JSON); {fix}") from None
    if not isinstance(d, dict):
        raise AekitError(f"{path} is corrupt (not a JSON object); {fix}")
    stamp = d.pop("aekit", None)
    if not isinstance(stamp, dict) or stamp.get("sha256") != hashlib.sha256(_canonical(d)).hexdigest():
        raise AekitError(f"{path} does not match its checksum (damaged or edited by hand); {fix}")
    return d


def config_text(cfg: RunConfig) -> str:
    """config.json's content: the config and, under "aekit", the SHA-256 of its canonical JSON."""
    d = cfg.to_dict()
    return json.dumps({**d, "aekit": {"format": FORMAT, "sha256": hashlib.sha256(_canonical(d)).hexdigest()}},
                      indent=2) + "\n"


def save_config(run_dir: Path, cfg: RunConfig) -> None:
    atomic_write_text(Path(run_dir) / CONFIG, config_text(cfg))


def load_config(run_dir: Path) -> RunConfig:
    run_dir = Path(run_dir)
    path = run_dir / CONFIG
    if not run_dir.is_dir():
        raise AekitError(f"run folder {run_dir} does not exist")
    if not path.is_file():
        raise AekitError(f"{run_dir} is not an aekit run (no {CONFIG})")
    try:
        d = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise AekitError(f"{path} is corrupt (not valid JSON); restore it from a copy of the run") from None
    if not isinstance(d, dict):
        raise AekitError(f"{path} is corrupt (not a JSON object); restore it from a copy of the run")
    stamp = d.pop("aekit", None)
    if stamp is not None:  # runs written before checksums had none
        if not isinstance(stamp, dict) or stamp.get("sha256") != hashlib.sha256(_canonical(d)).hexdigest():
            raise AekitError(f"{path} does not match its checksum: it was damaged or edited by hand; "
                             f"restore it, or change settings through aekit train --resume")
    return RunConfig.from_dict(d)


def _state_tensors(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    # safetensors refuses tensors that share memory; clone to contiguous CPU copies.
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in module.state_dict().items()}


def tensors_digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over the names, dtypes, shapes and bytes of ``tensors`` in sorted order."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous()
        h.update(name.encode() + b"\0" + str(t.dtype).encode() + b"\0" + str(tuple(t.shape)).encode() + b"\0")
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def weights_bytes(tensors: dict[str, torch.Tensor]) -> bytes:
    """A safetensors file whose metadata holds the digest of its tensors."""
    return st_save(tensors, metadata={_DIGEST_KEY: tensors_digest(tensors)})


def save_weights(path: Path, module: torch.nn.Module) -> None:
    atomic_write_bytes(path, weights_bytes(_state_tensors(module)))


def _safetensors_metadata(data: bytes) -> dict:
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8:8 + n]).get("__metadata__") or {}


def read_tensors(path: Path, what: str = "file") -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file, verified against the digest in its metadata when it has one."""
    path = Path(path)
    if not path.is_file():
        raise AekitError(f"{what} {path} is missing")
    data = path.read_bytes()
    try:
        tensors = st_load(data)
        metadata = _safetensors_metadata(data)
    except (SafetensorError, ValueError, RuntimeError, struct.error, UnicodeDecodeError) as e:
        raise AekitError(f"{what} {path} is corrupt or truncated ({e}); restore it or retrain") from None
    digest = metadata.get(_DIGEST_KEY)
    if digest is not None and digest != tensors_digest(tensors):
        raise AekitError(f"{what} {path} does not match its checksum (damaged bytes); restore it or retrain")
    return tensors


def load_weights(path: Path, module: torch.nn.Module) -> None:
    """Load verified safetensors weights into ``module``; a shape mismatch is a user error."""
    load_state(module, read_tensors(path, "weights file"), path)


def load_state(module: torch.nn.Module, state: dict, path: Path) -> None:
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or extra or wrong:
        detail = (f"missing {missing[:3]}" if missing else "") + (f" unexpected {extra[:3]}" if extra else "") + (
            f" shape mismatch in {wrong[:3]}" if wrong else "")
        raise AekitError(f"{path} does not fit the model described by its config.json ({detail.strip()})")
    module.load_state_dict(state)


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ----------------------------------------------------------------------------- JSON of training state
class _Encoder(json.JSONEncoder):
    def default(self, o):
        if isinstance(o, tuple):
            return list(o)
        return super().default(o)


def _float_safe(o):
    """NaN/inf are not JSON; store them as strings and restore them on read."""
    if isinstance(o, float) and not math.isfinite(o):
        return {"__float__": repr(o)}
    if isinstance(o, dict):
        return {k: _float_safe(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_float_safe(v) for v in o]
    return o


def _float_restore(o):
    if isinstance(o, dict):
        if set(o) == {"__float__"}:
            return float(o["__float__"])
        return {k: _float_restore(v) for k, v in o.items()}
    if isinstance(o, list):
        return [_float_restore(v) for v in o]
    return o


def split_state(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """A nested structure with its tensors moved into ``tensors`` (by path) and replaced by references."""
    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj.detach().to("cpu").contiguous().clone()
        return {"__tensor__": prefix}
    if isinstance(obj, dict):
        return {"__dict__": [[_key(k), split_state(v, f"{prefix}.{k}", tensors)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return [split_state(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]
    return obj


def _key(k):
    return {"__int__": k} if isinstance(k, int) else k


def join_state(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of :func:`split_state`."""
    if isinstance(obj, dict):
        if set(obj) == {"__tensor__"}:
            return tensors[obj["__tensor__"]]
        if set(obj) == {"__dict__"}:
            return {(k["__int__"] if isinstance(k, dict) else k): join_state(v, tensors) for k, v in obj["__dict__"]}
        return {k: join_state(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [join_state(v, tensors) for v in obj]
    return obj


# ----------------------------------------------------------------------------- generations
@dataclass(frozen=True)
class Generation:
    """One committed checkpoint: a folder whose manifest lists every file with its SHA-256."""

    path: Path
    sequence: int
    manifest: dict

    @property
    def step(self) -> int:
        return int(self.manifest["step"])

    def file(self, name: str) -> Path:
        return self.path / name

    def has(self, name: str) -> bool:
        return name in self.manifest["files"]

    def verify(self, names: Iterator[str] | None = None) -> None:
        """Check the SHA-256 and size of the listed files (all by default); one line naming the first bad one."""
        files = self.manifest["files"]
        for name in (names if names is not None else files):
            path = self.file(name)
            if name not in files:
                raise AekitError(f"{self.path} has no {name}")
            if not path.is_file():
                raise AekitError(f"{path} is missing from its checkpoint; restore the run folder from a copy")
            entry = files[name]
            if path.stat().st_size != entry["bytes"] or _sha256_file(path) != entry["sha256"]:
                raise AekitError(f"{path} does not match the checksum in its checkpoint's {MANIFEST} "
                                 f"(damaged or truncated); restore the run folder from a copy")

    def tensors(self, name: str) -> dict[str, torch.Tensor]:
        self.verify([name])
        return read_tensors(self.file(name))

    def load_weights(self, module: torch.nn.Module, best: bool = False) -> None:
        name = GEN_BEST if best and self.has(GEN_BEST) else GEN_WEIGHTS
        load_state(module, self.tensors(name), self.file(name))

    def training_state(self) -> dict:
        """training.json joined with training.safetensors' tensors (both verified)."""
        self.verify([GEN_STATE, GEN_TENSORS])
        try:
            meta = _float_restore(json.loads(self.file(GEN_STATE).read_text()))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise AekitError(f"{self.file(GEN_STATE)} is corrupt; restore the run folder from a copy") from None
        return join_state(meta, read_tensors(self.file(GEN_TENSORS)))


def _generation_folders(run_dir: Path) -> list[tuple[int, Path]]:
    folder = Path(run_dir) / CHECKPOINTS
    if not folder.is_dir():
        return []
    found = []
    for p in folder.iterdir():
        if p.is_dir() and p.name.startswith("gen-") and p.name[4:].isdigit():
            found.append((int(p.name[4:]), p))
    return sorted(found)


def newest_generation(run_dir: Path) -> Generation | None:
    """The newest complete generation (a folder with a readable manifest), or None."""
    for sequence, path in reversed(_generation_folders(run_dir)):
        manifest_path = path / MANIFEST
        try:
            manifest = json.loads(manifest_path.read_text())
        except FileNotFoundError:
            continue  # cannot happen for a renamed-into-place generation, but never trust one without it
        except (OSError, json.JSONDecodeError, UnicodeDecodeError):
            raise AekitError(f"{manifest_path} is corrupt; restore the run folder from a copy") from None
        _check_manifest(manifest, manifest_path)
        return Generation(path, sequence, manifest)
    return None


def _check_manifest(manifest, path: Path) -> None:
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or "files" not in manifest:
        raise AekitError(f"{path} is not an aekit manifest of format {FORMAT}; restore the run folder from a copy")
    body = {k: v for k, v in manifest.items() if k != "sha256"}
    if manifest.get("sha256") != hashlib.sha256(_canonical(body)).hexdigest():
        raise AekitError(f"{path} does not match its checksum (damaged bytes); restore the run folder from a copy")


def verify_views(run_dir: Path, generation: Generation | None) -> None:
    """The top-level views are each intact: weights files match their own digests (a view may be one
    checkpoint old after a kill), and metrics.jsonl is the generation's history, or that and one record
    more (see :func:`refresh_views`)."""
    run_dir = Path(run_dir)
    for name in (BEST, LAST):
        if (run_dir / name).is_file():
            read_tensors(run_dir / name, "weights file")
    path = run_dir / METRICS
    if generation is None or not path.is_file():
        return
    history = generation.training_state()["history"]
    try:
        lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise AekitError(f"{path} is damaged (not JSON lines); it is rebuilt from the checkpoint by "
                         f"aekit train --resume {run_dir}") from None
    ahead = len(lines) == len(history) + 1  # written for a generation a kill stopped from committing
    if lines[:len(history)] != history or not (len(lines) == len(history) or ahead):
        raise AekitError(f"{path} does not match the run's checkpoint (damaged bytes); it is rebuilt from the "
                         f"checkpoint by aekit train --resume {run_dir}")


def verify_run(run_dir: Path) -> list[str]:
    """Check every file aekit wrote in a run: config, every generation, the views. Returns what was checked."""
    run_dir = Path(run_dir)
    load_config(run_dir)
    checked = [CONFIG]
    newest = None
    for sequence, path in _generation_folders(run_dir):
        manifest_path = path / MANIFEST
        try:
            manifest = json.loads(manifest_path.read_text())
        except FileNotFoundError:
            raise AekitError(f"{path} has no {MANIFEST}: an unfinished checkpoint that a resumed run removes") from None
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise AekitError(f"{manifest_path} is corrupt; restore the run folder from a copy") from None
        _check_manifest(manifest, manifest_path)
        generation = Generation(path, sequence, manifest)
        generation.verify()
        for name in (GEN_WEIGHTS, GEN_BEST, GEN_TENSORS):
            if generation.has(name):
                read_tensors(generation.file(name))
        generation.training_state()
        checked += [str(Path(CHECKPOINTS) / path.name / n) for n in [*manifest["files"], MANIFEST]]
        newest = generation
    verify_views(run_dir, newest)
    checked += [n for n in (BEST, LAST, METRICS) if (run_dir / n).is_file()]
    return checked


def commit_generation(run_dir: Path, *, step: int, model_state: dict[str, torch.Tensor],
                      best_state: dict[str, torch.Tensor] | None, training: dict,
                      previous: Generation | None) -> Generation:
    """Write one generation atomically and return it.

    ``best_state`` None keeps the previous generation's best weights (a hard link, no copy).
    ``training`` is a nested structure of JSON values and tensors (split into the two training files).
    """
    run_dir = Path(run_dir)
    folder = run_dir / CHECKPOINTS
    sequence = (previous.sequence + 1) if previous is not None else 0
    existing = _generation_folders(run_dir)
    if existing:
        sequence = max(sequence, existing[-1][0] + 1)
    final = folder / f"gen-{sequence:08d}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-gen-{sequence:08d}-", dir=folder))
    except OSError as e:
        raise write_error(folder, e) from None
    try:
        tensors: dict[str, torch.Tensor] = {}
        meta = _float_safe(split_state(training, "state", tensors))
        files = {GEN_WEIGHTS: weights_bytes(model_state), GEN_TENSORS: weights_bytes(tensors),
                 GEN_STATE: json.dumps(meta, cls=_Encoder).encode()}
        if best_state is not None:
            files[GEN_BEST] = weights_bytes(best_state)
        entries = {}
        for name, data in files.items():
            _write_new(tmp / name, data)
            entries[name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
        if best_state is None and previous is not None and previous.has(GEN_BEST):
            _link_or_copy(previous.file(GEN_BEST), tmp / GEN_BEST)
            entries[GEN_BEST] = previous.manifest["files"][GEN_BEST]
        manifest = {"format": FORMAT, "step": step, "sequence": sequence, "written": time.time(), "files": entries}
        manifest["sha256"] = hashlib.sha256(_canonical(manifest)).hexdigest()
        _write_new(tmp / MANIFEST, json.dumps(manifest, indent=1).encode())
        _fsync_dir(tmp)
        os.chmod(tmp, 0o777 & ~_umask())
        os.rename(tmp, final)
        _fsync_dir(folder)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise write_error(final, e) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    generation = Generation(final, sequence, manifest)
    for old_sequence, old in _generation_folders(run_dir)[:-KEEP_GENERATIONS]:
        shutil.rmtree(old, ignore_errors=True)
    return generation


def _write_new(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _FILE_MODE)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def refresh_views(run_dir: Path, generation: Generation) -> None:
    """Top-level model.safetensors and model-last.safetensors: links to ``generation``'s weights.

    metrics.jsonl is written *before* its generation is committed (:func:`write_metrics`), so it is
    never behind the newest generation — at most one epoch ahead, after a kill between the two — and a
    metrics.jsonl that lost lines is known to be damaged (see :func:`verify_views`).
    """
    run_dir = Path(run_dir)
    _replace_by_link(generation.file(GEN_WEIGHTS), run_dir / LAST)
    if generation.has(GEN_BEST):
        _replace_by_link(generation.file(GEN_BEST), run_dir / BEST)


def _replace_by_link(src: Path, dst: Path) -> None:
    # rename() of a hard link over another link to the same file does nothing (POSIX), which would
    # leave the temporary name behind: a view that already is the file needs no refresh.
    with contextlib.suppress(OSError):
        if os.path.samefile(src, dst):
            return
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    try:
        _remove_quietly(tmp)
        _link_or_copy(src, tmp)
        os.replace(tmp, dst)
    except OSError as e:
        _remove_quietly(tmp)
        raise write_error(dst, e) from None


def write_metrics(run_dir: Path, history: list[dict[str, Any]]) -> None:
    atomic_write_text(Path(run_dir) / METRICS, "".join(json.dumps(h) + "\n" for h in history))


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """The epoch records of a run: from its newest generation (verified), else metrics.jsonl."""
    generation = newest_generation(run_dir)
    if generation is not None:
        return generation.training_state()["history"]
    path = Path(run_dir) / METRICS
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def is_leftover(p: Path) -> bool:
    """A temporary file or folder an aekit writer leaves behind only when it is killed mid-write."""
    return ((p.name.startswith(".") and p.name.endswith(".tmp") and p.is_file())
            or (p.name.startswith(".tmp-gen-") and p.is_dir()) or p.name == LOCK_INFO)


def clean_temporary(run_dir: Path) -> None:
    """Remove what killed writers left behind: hidden .tmp files and unfinished generation folders."""
    run_dir = Path(run_dir)
    for folder in (run_dir, run_dir / CHECKPOINTS, run_dir / "tb"):
        if not folder.is_dir():
            continue
        for p in folder.iterdir():
            if p.name == LOCK_INFO:
                continue  # the holder's own announcement is written after the clean-up
            if is_leftover(p):
                if p.is_dir():
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    _remove_quietly(p)


def is_run(path: Path) -> bool:
    return (Path(path) / CONFIG).is_file()


# ----------------------------------------------------------------------------- the lock
class RunLock:
    """An advisory exclusive lock on a run folder while a command writes it.

    ``flock`` on the folder itself: nothing is written to take it, the kernel releases it when the
    holder dies (a stale lock cannot outlive its process), and a second holder is refused at once.
    Who holds it (pid, host, start time) is written to ``.lock-info`` by :meth:`announce`, after the
    holder's checks, so a command that fails before changing anything leaves the folder byte-identical.
    """

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.fd: int | None = None
        self.announced = False

    def acquire(self) -> "RunLock":
        import fcntl

        try:
            self.fd = os.open(self.run_dir, os.O_RDONLY)
        except OSError as e:
            raise AekitError(f"cannot open run folder {self.run_dir}: {e.strerror}") from None
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            self.fd = None
            raise AekitError(f"{self.run_dir} is being written by another aekit process{self._holder()}; "
                             f"wait for it to finish, or pick another --out") from None
        except OSError:
            pass  # a file system without flock (some network mounts): run unlocked rather than not at all
        return self

    def _holder(self) -> str:
        try:
            info = json.loads((self.run_dir / LOCK_INFO).read_text())
            return f" (pid {info['pid']} on {info['host']}, since {info['since']})"
        except (OSError, ValueError, KeyError, TypeError):
            return ""

    def announce(self, command: str) -> None:
        info = {"pid": os.getpid(), "host": socket.gethostname(), "command": command,
                "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        atomic_write_text(self.run_dir / LOCK_INFO, json.dumps(info) + "\n")
        self.announced = True

    def release(self) -> None:
        if self.announced:
            _remove_quietly(self.run_dir / LOCK_INFO)
            self.announced = False
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor releases the flock
            self.fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def folder_digest(path: Path) -> str:
    """SHA-256 over every file's relative path and bytes under ``path`` (tests: "nothing changed")."""
    h = hashlib.sha256()
    for p in sorted(Path(path).rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(path)).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()
