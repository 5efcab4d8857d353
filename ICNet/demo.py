"""ICNet demo: image(s) -> colourised prediction + overlay: python demo.py --help."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from common.entry import launch  # noqa: E402

if __name__ == "__main__":
    launch("demo", "icnet", __file__)
