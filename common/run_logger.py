"""Per-rank log: every rank writes its own file; rank 0 also prints to stdout.

Lines are echoed at once but reach the file only from :meth:`RunLogger.commit` on (the training
loop's first iteration, or the end of a run that succeeded): a run refused at start leaves the
log of an earlier run in the same work dir exactly as it was. Where there is no earlier log, a
refused run's lines are written (a new file loses nothing), which is the only record of a rank
that does not print."""
import os
import stat
import sys
import time

from tqdm import tqdm

from common.errors import UserError


def check_log_path(path):
    """A log path that can be appended to: a regular file or a new name in a folder (that
    exists or can be made), not a folder, device or FIFO."""
    if os.path.exists(path) and not stat.S_ISREG(os.stat(path).st_mode):
        kind = "a folder" if os.path.isdir(path) else "not a regular file"
        raise UserError(f"log file {path} is {kind}; pass a file path to --log-file (or "
                        "another --work-dir)")
    folder = os.path.dirname(os.path.abspath(path))
    parent = folder
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent) or not os.access(parent, os.W_OK):
        raise UserError(f"log file {path} cannot be written ({parent} is not a writable "
                        "folder); pass a writable --log-file or --work-dir")


class RunLogger:
    def __init__(self, path, echo=True):
        check_log_path(path)
        self.path = path
        self.echo = echo
        self._pending = []   # lines before commit()
        self._file = None

    def __call__(self, message):
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        for line in str(message).splitlines() or [""]:
            text = f"{stamp} - {line}"
            if self._file is None:
                self._pending.append(text)
            else:
                self._write(text)
            if self.echo:
                tqdm.write(text, file=sys.stdout)  # keeps progress bars intact
                sys.stdout.flush()

    def commit(self):
        """From now on lines go to the file (the ones held so far first)."""
        if self._file is not None:
            return
        try:
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            self._file = open(self.path, "a", buffering=1)
        except OSError as exc:
            raise UserError(f"cannot write the log file {self.path} ({exc.strerror}); pass a "
                            "writable --log-file or --work-dir") from None
        for text in self._pending:
            self._write(text)
        self._pending = []

    def _write(self, text):
        try:
            self._file.write(text + "\n")
        except OSError as exc:
            raise UserError(f"cannot write the log file {self.path} ({exc.strerror}); free "
                            "space or pass another --log-file / --work-dir") from None

    def close(self, succeeded=True):
        """Close the file; a run that never committed writes its held lines when it
        ``succeeded`` or when the file does not exist yet."""
        if succeeded:
            self.commit()
        elif self._file is None and not os.path.lexists(self.path):
            try:
                self.commit()
            except UserError:
                pass  # the run's own error is the one to report
        if self._file is not None:
            self._file.close()
