"""BiSeNetV1 demo: image(s) -> colourised prediction + overlay: python demo.py --help."""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]

from bisenetv1 import SPEC  # noqa: E402
from common.demo_cli import main  # noqa: E402
from common.errors import run_main  # noqa: E402

if __name__ == "__main__":
    run_main(lambda argv: main(argv, SPEC))
