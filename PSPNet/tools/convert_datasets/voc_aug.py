"""The seed's (mmseg's) SBD converter, as its README types it in the model directory:

    python tools/convert_datasets/voc_aug.py data/VOCdevkit data/VOCdevkit/VOCaug --nproc 8

The same code as ``python3 tools/voc_aug.py`` (SegmentationClassAug, aug.txt, trainaug.txt).
"""
import os
import sys

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))))

from common.errors import user_errors  # noqa: E402
from PSPNet.tools.voc_aug import main  # noqa: E402

if __name__ == "__main__":
    with user_errors():
        main()
