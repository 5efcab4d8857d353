"""Train / evaluate ICNet: python train.py --help. The loop lives in common/."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from common.entry import launch  # noqa: E402

if __name__ == "__main__":
    launch("train", "icnet", __file__)
