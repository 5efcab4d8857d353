"""Decoded-data cache: PNG/JPEG decoding taken out of the training loop, pixel for pixel.

``python3 train.py --data_path DIR --prepare-data [--workers N]`` decodes every image and label
of the train and val splits once into uint8 ``.npy`` files under ``$SEGZOO_DECODED`` (default
``<cache>/decoded``, see :mod:`common.cache`); from then on the loader reads those (a copy from
the page cache or the disk) instead of decoding. Nothing else changes: the same arrays go
through the same transforms.

An entry is named after its source's absolute path, size and modification time, so a changed
source is not found (and decoded from the file, as without a cache) and a rerun of
``--prepare-data`` decodes only what is missing: interrupting it loses nothing. Each entry is
written atomically, then read back and compared with the decode.
"""
import contextlib
import hashlib
import os
import shutil
import sys
from multiprocessing import Pool

import numpy as np
from tqdm import tqdm

from common.cache import cache_dir
from common.checkpoint import atomic_write_bytes
from common.errors import UserError
from common.stop_signals import ignore_stop_signals

FORMAT = 1  # part of every entry's name: a new layout never reads an old one
HEADER_BYTES = 128  # an .npy header


def decoded_dir():
    return os.environ.get("SEGZOO_DECODED") or os.path.join(cache_dir(), "decoded")


@contextlib.contextmanager
def cache_at(folder):
    """Use ``folder`` as the cache inside the block (the benchmarks measure with and without)."""
    old = os.environ.get("SEGZOO_DECODED")
    os.environ["SEGZOO_DECODED"] = folder
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("SEGZOO_DECODED", None)
        else:
            os.environ["SEGZOO_DECODED"] = old


def entry_for(path):
    """The cache file that holds ``path`` decoded, as ``path`` is now (its size and mtime)."""
    st = os.stat(path)
    key = hashlib.sha1(f"{FORMAT}\0{os.path.abspath(path)}\0{st.st_size}\0{st.st_mtime_ns}"
                       .encode()).hexdigest()
    return os.path.join(decoded_dir(), key[:2], key + ".npy")


def load(path, decode):
    """``decode(path)``'s array, read from the cache where it holds it."""
    try:
        return np.load(entry_for(path))
    except (OSError, ValueError):  # not prepared (or the source is missing: decode names it)
        return decode(path)


def _prepare_one(job):
    """Decode one file into its entry, written atomically and read back equal to the decode;
    return the bytes written."""
    path, decode, entry = job
    array = decode(path)
    try:
        atomic_write_bytes(entry, lambda f: np.save(f, array))
    except OSError as exc:
        raise UserError(f"cannot write the decoded copy of {path} ({exc.strerror}); free space "
                        "or set SEGZOO_DECODED to another disk") from None
    if not np.array_equal(np.load(entry), array):
        os.unlink(entry)
        raise UserError(f"the decoded copy of {path} does not read back equal; check the disk "
                        "of $SEGZOO_DECODED")
    return os.path.getsize(entry)


def prepare(files, sizes, workers, log):
    """Decode ``files`` (``[(path, decode function)]``) into the cache with ``workers``
    processes and a progress bar; ``sizes`` (bytes per file, from the headers) is checked
    against the free space first. Returns (files written, bytes written)."""
    folder = decoded_dir()
    os.makedirs(folder, exist_ok=True)
    todo = []  # ((path, decode, entry), size) of the files not prepared yet
    for (path, decode), size in zip(files, sizes):
        entry = entry_for(path)
        if not os.path.exists(entry):
            todo.append(((path, decode, entry), size))
    need = sum(size + HEADER_BYTES for _, size in todo)
    free = shutil.disk_usage(folder).free
    if need > free:
        raise UserError(f"--prepare-data needs {need / 1e9:.1f} GB for {len(todo)} files but "
                        f"{folder} has {free / 1e9:.1f} GB free; free space or set "
                        "SEGZOO_DECODED to a bigger disk")
    log(f"--prepare-data: decoding {len(todo)} files ({need / 1e9:.2f} GB) into {folder}; "
        f"{len(files) - len(todo)} already there")
    written = 0
    with tqdm(total=len(todo), desc="prepare-data", file=sys.stderr, mininterval=2.0) as bar:
        jobs = [job for job, _ in todo]
        if workers > 1 and len(jobs) > 1:
            with Pool(workers, ignore_stop_signals) as pool:
                for size in pool.imap_unordered(_prepare_one, jobs, chunksize=4):
                    written += size
                    bar.update(1)
        else:
            for job in jobs:
                written += _prepare_one(job)
                bar.update(1)
    return len(todo), written
