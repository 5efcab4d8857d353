"""Graceful stop on SIGTERM / SIGINT (preemptible clusters send SIGTERM, Ctrl-C sends SIGINT).

The first signal only sets a flag: the training loop finishes the current iteration, writes a
checkpoint for it and exits with status 128 + signal number (143 for SIGTERM, 130 for SIGINT),
so rerunning the same command resumes exactly there. A second signal exits at once. Launchers
such as torchrun forward a signal to workers that already received it from the terminal; a
repeat of the same signal within ``DUPLICATE_WINDOW_S`` is taken as that duplicate delivery.
DataLoader workers ignore SIGINT (a terminal's Ctrl-C reaches the whole process group; the
main process owns the stop) but keep SIGTERM's default, which is how the main process ends them
when it exits, also after an error.
"""
import os
import signal
import sys
import time

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
DUPLICATE_WINDOW_S = 1.0


class StopRequest:
    def __init__(self):
        self.signum = None
        self._at = 0.0
        self._previous = {}

    @property
    def requested(self):
        return self.signum is not None

    def describe(self):
        return signal.Signals(self.signum).name if self.signum else "nothing"

    def install(self):
        for sig in STOP_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def uninstall(self):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def _handle(self, signum, frame):
        now = time.monotonic()
        if self.signum is None:
            self.signum, self._at = signum, now
            print(f"{signal.Signals(signum).name} received: stopping after this iteration with "
                  "a checkpoint (send it again to exit at once)", file=sys.stderr, flush=True)
            return
        if signum == self.signum and now - self._at < DUPLICATE_WINDOW_S:
            return
        print(f"{signal.Signals(signum).name} received again: exiting now", file=sys.stderr,
              flush=True)
        os._exit(128 + signum)


def ignore_stop_signals(_worker_id=None):
    """DataLoader ``worker_init_fn`` and process-pool initializer: leave Ctrl-C (SIGINT) to the
    main process (a worker would print its own traceback). SIGTERM keeps
    its default: multiprocessing terminates workers with it at exit, so ignoring it would hang
    an exiting process (after an error in the run) for ever."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class Stopped(Exception):
    """Raised after the stop checkpoint is written; the process exits with ``exit_code``."""

    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.exit_code = 128 + signum
