"""Checkpoint I/O.

One file holds ``state_dict`` (model), ``optimizer``, ``scaler``, ``meta`` (model name,
iteration, resolved config) and ``rng`` (torch generator states). Files are written atomically
(temp file in the same folder, fsync, rename) and a small text file ``latest`` names the newest
complete checkpoint, so a run killed mid-write never leaves a half file behind a pointer. Each
checkpoint has a ``.sha256`` sidecar (torch.load does not check zip CRCs, so a flipped byte
would otherwise load silently); a file that does not match it is refused as corrupted.
Everything is loaded with ``torch.load(weights_only=True)``: tensors and plain containers only;
mmengine Runner checkpoints (mmseg 1.x) are read the same way with their OpenMMLab objects
replaced by inert stand-ins (:func:`load_file`), so no code from a file ever runs.
"""
import hashlib
import io
import os
import tempfile

import torch

from common.errors import UserError, first_line

LATEST = "latest"


class CorruptCheckpoint(UserError):
    """A checkpoint file that exists but is truncated or damaged."""


def _fsync_dir(path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path, writer):
    """Call ``writer(fileobj)`` on a temp file next to ``path`` and rename it into place."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            writer(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_dir(folder)


def remove_stale_temp_files(work_dir):
    """Temp files of writes killed before their rename (SIGKILL, power loss)."""
    if os.path.isdir(work_dir):
        for fname in os.listdir(work_dir):
            if fname.startswith(".tmp-"):
                os.unlink(os.path.join(work_dir, fname))


def save_checkpoint(work_dir, iteration, state, max_keep=None):
    """Write ``iter_<N>.pth`` (+ ``.sha256``) atomically, point ``latest`` at it, then keep the
    newest ``max_keep`` (never the one ``latest`` names). A failed write (disk full, no
    permission) raises a UserError and leaves every earlier checkpoint and ``latest`` as they
    were."""
    name = f"iter_{iteration}.pth"
    path = os.path.join(work_dir, name)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = buffer.getvalue()
    try:
        atomic_write_bytes(path, lambda f: f.write(data))
        atomic_write_bytes(path + ".sha256", lambda f: f.write(
            f"{hashlib.sha256(data).hexdigest()}  {name}\n".encode()))
        atomic_write_bytes(os.path.join(work_dir, LATEST), lambda f: f.write(name.encode()))
    except OSError as exc:
        previous = latest_checkpoint(work_dir)
        raise UserError(f"could not write checkpoint {path} ({exc.strerror or exc}); "
                        + (f"the previous checkpoint {previous} is intact" if previous else
                           "no earlier checkpoint exists") + "; free space or fix permissions "
                        "and rerun to resume") from None
    if max_keep:
        prune(work_dir, max_keep)
    return path


def prune(work_dir, keep):
    """Delete all but the newest ``keep`` checkpoints, sparing the one ``latest`` names."""
    protected = latest_checkpoint(work_dir)
    for old in list_checkpoints(work_dir)[:-keep]:
        if old != protected:
            os.unlink(old)
            if os.path.exists(old + ".sha256"):
                os.unlink(old + ".sha256")


def list_checkpoints(work_dir):
    """``iter_*.pth`` files of a work dir, oldest iteration first."""
    if not os.path.isdir(work_dir):
        return []
    found = []
    for fname in os.listdir(work_dir):
        if fname.startswith("iter_") and fname.endswith(".pth"):
            stem = fname[5:-4]
            if stem.isdigit():
                found.append((int(stem), os.path.join(work_dir, fname)))
    return [p for _, p in sorted(found)]


def latest_checkpoint(work_dir):
    """Path named by ``latest`` (or None when the work dir holds no complete checkpoint). The
    pointer is data, not a path: only an ``iter_<N>.pth`` file name inside the work dir counts,
    so a damaged or hostile pointer (``../..``, an absolute path, binary junk) is ignored and
    the caller falls back to the newest ``iter_*.pth``."""
    pointer = os.path.join(work_dir, LATEST)
    if not os.path.isfile(pointer):
        return None
    with open(pointer, "rb") as f:
        name = f.read(256).decode("ascii", "replace").strip()
    stem = name[len("iter_"):-len(".pth")] if name.endswith(".pth") else ""
    if not (name.startswith("iter_") and stem.isdigit() and stem.isascii()):
        return None
    path = os.path.join(work_dir, name)
    return path if os.path.isfile(path) else None


def resumable_checkpoints(work_dir):
    """Candidates for auto-resume, best first: the one ``latest`` names, then every other
    ``iter_*.pth`` newest first (fallbacks when the newer ones turn out corrupted)."""
    latest = latest_checkpoint(work_dir)
    others = [p for p in reversed(list_checkpoints(work_dir)) if p != latest]
    return ([latest] if latest else []) + others


def newest_checkpoint(work_dir):
    """The checkpoint ``latest`` names, else the newest ``iter_*.pth`` (None: there is none)."""
    found = resumable_checkpoints(work_dir)
    return found[0] if found else None


def _read_verified(path, what):
    """The file's bytes, checked against its ``.sha256`` sidecar when there is one."""
    with open(path, "rb") as f:
        data = f.read()
    sidecar = path + ".sha256"
    if os.path.isfile(sidecar):
        with open(sidecar) as f:
            fields = f.read().split()
        expected = fields[0] if fields else ""
        if hashlib.sha256(data).hexdigest() != expected:
            raise CorruptCheckpoint(f"{what} {path} is truncated or corrupted (its SHA-256 "
                                    f"does not match {os.path.basename(sidecar)}); use another "
                                    "file")
    return data


# Checkpoints written by mmengine's Runner (mmseg 1.x training) pickle objects of these
# packages in ``message_hub`` (e.g. HistoryBuffer with numpy arrays) next to the tensors.
OPENMMLAB_PACKAGES = ("mmengine", "mmcv", "mmseg", "numpy")
OPENMMLAB_ONLY = ("message_hub", "param_schedulers")  # dropped: objects we never use


def _inert_class(dotted):
    """A stand-in for the class or function ``dotted`` of a checkpoint's pickle: building or
    "calling" it records its arguments and state and runs nothing else, so no code of the
    file's choosing executes."""
    module, _, name = dotted.rpartition(".")

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs

    def __setstate__(self, state):
        self.state = state

    return type(name, (), {"__init__": __init__, "__setstate__": __setstate__,
                           "__module__": module, "__qualname__": name})


def _load_openmmlab(data, path, what):
    """An mmengine Runner checkpoint: its tensors (``state_dict``, ``optimizer``, ``meta``)
    with every OpenMMLab / numpy object replaced by an inert stand-in, then dropped. A file
    naming any other global (``os.system``, ``builtins.eval``, ...) is refused."""
    unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(io.BytesIO(data))
    foreign = [g for g in unsafe if g.split(".")[0] not in OPENMMLAB_PACKAGES]
    if foreign:
        raise UserError(f"{what} {path} holds Python objects beyond tensors (e.g. {foreign[0]}), "
                        "which are not loaded for safety; re-save just its state_dict with "
                        "torch.save")
    with torch.serialization.safe_globals([_inert_class(g) for g in unsafe]):
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    if not isinstance(obj, dict):
        raise UserError(f"{what} {path} is not a checkpoint dictionary")
    kept = {k: v for k, v in obj.items() if k not in OPENMMLAB_ONLY}
    kept["openmmlab_dropped"] = sorted(set(obj) & set(OPENMMLAB_ONLY))
    meta = kept.get("meta")
    if isinstance(meta, dict) and "iteration" not in meta:  # mmengine counts in ``iter``
        kept["meta"] = {**meta, "iteration": int(meta.get("iter", 0))}
    return kept


def load_file(path, what="checkpoint"):
    """``torch.load(weights_only=True)`` with one-line errors for missing/corrupt/unsafe files;
    an mmengine Runner checkpoint (mmseg 1.x) is read by :func:`_load_openmmlab`."""
    if not os.path.isfile(path):
        raise UserError(f"{what} {path} does not exist; check the path")
    data = _read_verified(path, what)
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - garbage bytes raise anything from the unpickler
        if "weights_only" in str(exc) or "Unsupported global" in str(exc):
            return _load_openmmlab(data, path, what)
        raise CorruptCheckpoint(f"{what} {path} is truncated or corrupted ({first_line(exc)}); "
                                "use another file") from None


def extract_state_dict(obj):
    """Model weights from our checkpoints, mmseg/mmengine checkpoints or a bare state_dict."""
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        return None
    if obj and all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


def load_model_weights(model, path, model_name):
    """Load a checkpoint file's weights into ``model`` (strict); return the loaded object."""
    return apply_weights(model, load_file(path), path, model_name)


def apply_weights(model, obj, path, model_name):
    """Put the weights of a loaded checkpoint ``obj`` (read from ``path``) into ``model`` with
    ``strict=True``; explain mismatches. Returns ``obj``."""
    meta = obj.get("meta") if isinstance(obj, dict) else None
    if isinstance(meta, dict) and meta.get("model") not in (None, model_name):
        raise UserError(f"checkpoint {path} was written for {meta['model']}, not {model_name}; "
                        "pass a checkpoint of this model")
    state = extract_state_dict(obj)
    if state is None:
        raise UserError(f"checkpoint {path} holds no model state_dict; pass a checkpoint "
                        "written by train.py or an mmseg checkpoint")
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong:
        example = (missing or unexpected or wrong)[0]
        raise UserError(f"checkpoint {path} does not fit {model_name} with this config "
                        f"({len(missing)} missing, {len(unexpected)} unexpected, {len(wrong)} "
                        f"wrong-shape keys, e.g. {example}); pass the matching --config")
    model.load_state_dict(state, strict=True)
    return obj
