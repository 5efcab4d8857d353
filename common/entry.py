"""Launch a shared tool (train, export, demo) for the model whose directory calls it.

A model directory's ``train.py`` is just ``launch("train", "bisenetv1", __file__)``: the
model module (holding ``SPEC``) is imported from the caller's directory.
"""
import importlib
import os
import sys

from common.errors import run_main

TOOLS = {"train": "common.train_cli", "export": "common.onnx_export", "demo": "common.demo_cli"}


def launch(tool, model_module, caller_file):
    sys.path.insert(0, os.path.dirname(os.path.abspath(caller_file)))
    spec = importlib.import_module(model_module).SPEC
    main = importlib.import_module(TOOLS[tool]).main
    run_main(lambda argv: main(argv, spec))
