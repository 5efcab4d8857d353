"""User-facing errors: one line naming the problem and the fix, non-zero exit, no traceback
(``SEGZOO_DEBUG=1`` in the environment shows the traceback instead)."""
import argparse
import contextlib
import os
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
    ``error: ...`` on stderr and exit 2, Ctrl-C outside a training loop's graceful stop one
    line and exit 130, a graceful stop (:class:`common.stop_signals.Stopped`) its exit
    status. ``SEGZOO_DEBUG=1`` lets the exception through, traceback and all."""
    from common.stop_signals import Stopped
    debug = os.environ.get("SEGZOO_DEBUG", "") not in ("", "0")
    try:
        yield
    except UserError as exc:
        if debug:
            raise
        print(f"error: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)
    except KeyboardInterrupt:
        if debug:
            raise
        print("error: interrupted (Ctrl-C / SIGINT); outputs are written whole or not at all, "
              "so run the same command again", file=sys.stderr, flush=True)
        sys.exit(130)
    except Stopped as exc:
        sys.exit(exc.exit_code)


def check_output_path(path, flag):
    """An output file named by ``flag``: not a folder, in a folder that exists."""
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise UserError(f"{flag} {path} is a folder; pass a file name")
    if not os.path.isdir(folder):
        raise UserError(f"{flag} {path}: the folder {folder} does not exist; create it or pass "
                        "another path")


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
