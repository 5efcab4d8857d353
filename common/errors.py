"""User-facing errors: one line naming the problem and the fix, non-zero exit, no traceback."""
import argparse
import contextlib
import sys


class UserError(Exception):
    """A problem with the user's input (flags, config, data, checkpoint), not a bug."""


def first_line(exc):
    """An exception's first message line (its type name when it has no message): what a
    one-line error quotes of a library's multi-line complaint."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@contextlib.contextmanager
def user_errors():
    """An entry script's ``with user_errors(): main()``: a :class:`UserError` becomes
    ``error: ...`` on stderr and exit 2, a graceful stop
    (:class:`common.stop_signals.Stopped`) its exit status."""
    from common.stop_signals import Stopped
    try:
        yield
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)
    except Stopped as exc:
        sys.exit(exc.exit_code)


def unwrap_worker_error(exc):
    """A UserError re-raised by a DataLoader worker carries the worker's traceback in its
    message; keep only the original one-line message."""
    last = str(exc).strip().splitlines()[-1] if str(exc).strip() else ""
    prefix = "UserError: "
    if prefix in last:
        return UserError(last.split(prefix, 1)[1])
    return exc


class ArgParser(argparse.ArgumentParser):
    """argparse whose errors are one-line :class:`UserError`s (no usage dump)."""

    def error(self, message):
        raise UserError(f"{message}; see --help")
