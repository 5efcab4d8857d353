"""The seed's (mmseg's) Cityscapes converter, as its README types it in the model directory:

    python tools/convert_datasets/cityscapes.py data/cityscapes --nproc 8

Writes ``*_gtFine_labelTrainIds.png`` next to every ``*_gtFine_labelIds.png``: the same code as
``python3 -m common.tools.convert_cityscapes`` from the repository root.
"""
import os
import sys

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))))

from common.errors import user_errors  # noqa: E402
from common.tools.convert_cityscapes import main  # noqa: E402

if __name__ == "__main__":
    with user_errors():
        main()
