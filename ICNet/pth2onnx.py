"""Export ICNet to ONNX and verify it with onnxruntime: python pth2onnx.py --help."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from common.entry import launch  # noqa: E402

if __name__ == "__main__":
    launch("export", "icnet", __file__)
