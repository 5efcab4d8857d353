"""User-facing errors: one line naming the problem and the fix, non-zero exit, no traceback."""
import sys


class UserError(Exception):
    """A problem with the user's input (flags, config, data, checkpoint), not a bug."""


def run_main(main, argv=None):
    """Run ``main(argv)``; turn a :class:`UserError` into ``error: ...`` on stderr and exit 2."""
    try:
        return main(argv)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)
