"""Dataset validation: every problem of a split at once, with file names.

Checked: images without labels and labels without images (or ids of a VOC list without
files), paths that are no regular file (a dangling symlink, a FIFO, a folder: never opened,
so a FIFO cannot block the check), files that cannot be decoded, image/label size mismatches,
label values outside ``0..num_classes-1`` and not the ignore index. ``train.py --check-data`` prints the report;
every training run checks its splits at start and refuses to train on a broken dataset. A
split that passed is remembered (by its files' paths, sizes and modification times, under
``$SEGZOO_CACHE/data_checks``), so later starts cost one ``stat`` per file.
"""
import hashlib
import json
import os
import stat
import sys
from multiprocessing import Pool

import numpy as np
from tqdm import tqdm

from common.datasets import read_image, read_label
from common.errors import UserError
from common.stop_signals import ignore_stop_signals
from common.cache import cache_dir

SHOWN = 20           # problems printed before "... and N more"
PARALLEL_FROM = 64   # pairs; fewer are checked in this process


def check_pair(job):
    """Problems of one (image, label) pair, as a list of lines."""
    img_path, label_path, num_classes, ignore_index = job
    found = []
    img = label = None
    try:
        img = read_image(img_path)
    except UserError as exc:
        found.append(str(exc).split(";")[0])
    try:
        label = read_label(label_path)
    except UserError as exc:
        found.append(str(exc).split(";")[0])
    if img is not None and label is not None and img.shape[:2] != label.shape:
        found.append(f"image {img_path} is {img.shape[1]}x{img.shape[0]} but its label "
                     f"{label_path} is {label.shape[1]}x{label.shape[0]}")
    if label is not None:
        values = np.unique(label)
        bad = values[(values >= num_classes) & (values != ignore_index)]
        if bad.size:
            found.append(f"label {label_path} has values {', '.join(map(str, bad[:8]))} "
                         f"outside 0..{num_classes - 1} and not {ignore_index}")
    return found


def file_stat(path):
    """(``os.stat`` of ``path``, None) for a regular file, else (None, why it cannot be read
    as a data file)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            return None, f"{path} is a dangling symlink (to {os.readlink(path)})"
        return None, f"{path} does not exist"
    except OSError as exc:
        return None, f"{path} cannot be read ({exc.strerror})"
    return (st, None) if stat.S_ISREG(st.st_mode) else (None, f"{path} is not a regular file")


def _signature(pairs, stats, num_classes, ignore_index):
    digest = hashlib.sha256(f"{num_classes}/{ignore_index}".encode())
    for pair in pairs:
        for path in pair:
            st = stats[path]
            digest.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def scan_split(cfg, root, split, pairs, problems, workers=1, use_cache=True):
    """The problems of one listed split: the listing's (``problems``, e.g. images without
    labels) plus those found decoding every pair (skipped when an earlier scan of exactly
    these files, sizes and mtimes found none)."""
    data = cfg["data"]
    problems = list(problems)
    stats, unreadable = {}, {}
    for path in (p for pair in pairs for p in pair):
        stats[path], why = file_stat(path)
        if why:
            unreadable[path] = why
    problems += unreadable.values()
    pairs = [pair for pair in pairs if not any(p in unreadable for p in pair)]
    marker = os.path.join(cache_dir(), "data_checks",
                          _signature(pairs, stats, data["num_classes"], data["ignore_index"]))
    if use_cache and not problems and os.path.isfile(marker):
        return []
    jobs = [(i, l, data["num_classes"], data["ignore_index"]) for i, l in pairs]
    results = []
    with tqdm(total=len(jobs), desc=f"data check ({split})", file=sys.stderr,
              mininterval=2.0, disable=len(jobs) < PARALLEL_FROM) as progress:
        if len(jobs) >= PARALLEL_FROM and workers > 1:
            with Pool(workers, ignore_stop_signals) as pool:
                for found in pool.imap(check_pair, jobs, chunksize=8):
                    results.append(found)
                    progress.update(1)
        else:
            for job in jobs:
                results.append(check_pair(job))
                progress.update(1)
    problems += [line for found in results for line in found]
    if not problems:
        os.makedirs(os.path.dirname(marker), exist_ok=True)
        with open(marker, "w") as f:
            json.dump({"root": root, "split": split, "pairs": len(pairs)}, f)
    return problems


def check_dataset(cfg, root, listing, log, workers=1, use_cache=True, shown=SHOWN):
    """Scan every split of ``listing`` (``{split: (pairs, listing problems)}``, as the
    dataset module's ``list_split`` gives for each split); log the problems (the first ``shown``,
    None = all); raise one UserError summing them up. Returns ``{split: pairs}``: the checked
    pairs to build the datasets from (:func:`common.data.build_datasets`)."""
    checked, all_problems = {}, []
    for split, (pairs, listed_problems) in listing.items():
        problems = scan_split(cfg, root, split, pairs, listed_problems, workers, use_cache)
        checked[split] = pairs
        all_problems += [f"[{split}] {p}" for p in problems]
    if not all_problems:
        return checked
    for line in all_problems[:shown]:
        log(f"data problem: {line}")
    if shown is not None and len(all_problems) > shown:
        log(f"data problem: ... and {len(all_problems) - shown} more (python3 train.py "
            "--check-data lists them all)")
    first = all_problems[0]
    raise UserError(f"{len(all_problems)} problem(s) in the dataset at {root} (first: "
                    f"{first}); fix or remove those files (the log lists them)")
