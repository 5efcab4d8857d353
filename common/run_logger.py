"""Per-rank log: every rank writes its own file; rank 0 also prints to stdout."""
import os
import sys
import time

from tqdm import tqdm


class RunLogger:
    def __init__(self, path, echo=True):
        self.path = path
        self.echo = echo
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self._file = open(path, "a", buffering=1)

    def __call__(self, message):
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        for line in str(message).splitlines() or [""]:
            text = f"{stamp} - {line}"
            self._file.write(text + "\n")
            if self.echo:
                tqdm.write(text, file=sys.stdout)  # keeps progress bars intact
                sys.stdout.flush()

    def close(self):
        self._file.close()
