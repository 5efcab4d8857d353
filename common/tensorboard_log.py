"""``--tensorboard``: training and validation scalars also go to TensorBoard event files in
``<work dir>/tensorboard`` (rank 0 only). TensorBoard is optional; without the package the
flag is a one-line error saying what to install."""
import os

from common.errors import UserError


def _summary_writer_class():
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise UserError("--tensorboard needs the tensorboard package: pip install tensorboard "
                        "(or drop --tensorboard)") from None
    return SummaryWriter


class ScalarSink:
    """Writes ``{tag: value}`` dicts at an iteration."""

    def __init__(self, writer):
        self._writer = writer

    def add(self, scalars, step):
        for tag, value in scalars.items():
            self._writer.add_scalar(tag, float(value), step)
        self._writer.flush()

    def close(self):
        self._writer.close()


def open_sink(enabled, work_dir, is_main):
    """A :class:`ScalarSink` on rank 0 when ``enabled`` (the package is checked on every rank,
    so all fail alike), else None."""
    if not enabled:
        return None
    writer_class = _summary_writer_class()
    return ScalarSink(writer_class(log_dir=os.path.join(work_dir, "tensorboard"))) if is_main \
        else None
