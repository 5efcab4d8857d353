"""The repository's shape: model directories are the programs, common/ a library they call.

- no project module is imported by a computed name (only literal third-party probes remain);
- common/'s runtime library never imports a model directory, nor a tool at module level (the
  synthetic generator is imported only by a run without --data_path); model directories never
  import each other; the tools under common/tools/ may import the four models explicitly;
- entry scripts edit sys.path once, inserting the repository root;
- from train.py to the first optimizer step the stack holds the model's train.py and common/
  calls only, never a frame of the model directory under a frame of common/ (no callback), and
  no other model's or tool's module is loaded.
"""
import ast
import glob
import json
import os
import subprocess
import sys

import pytest

from conftest import MODELS, REPO

MODEL_DIRS = tuple(MODELS)
THIRD_PARTY_PROBES = {"torch_npu", "apex.amp"}


def project_sources():
    for path in glob.glob(os.path.join(REPO, "**", "*.py"), recursive=True):
        rel = os.path.relpath(path, REPO)
        if not rel.startswith(("tests" + os.sep, ".")):
            yield rel, path


def imported_modules(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            yield node.module


def module_level_imports(statements):
    """Modules imported when the module is imported (not inside functions or classes)."""
    for node in statements:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield from imported_modules(node)
        for field in ("body", "orelse", "finalbody", "handlers"):
            yield from module_level_imports(getattr(node, field, []))


def parsed(path):
    with open(path) as f:
        return ast.parse(f.read(), path)


def test_no_project_module_is_imported_by_a_computed_name():
    for rel, path in list(project_sources()) + [
            (os.path.relpath(p, REPO), p) for p in glob.glob(os.path.join(REPO, "tests", "*.py"))]:
        for node in ast.walk(parsed(path)):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "attr", getattr(node.func, "id", None))
            if name in ("import_module", "__import__", "run_module", "spec_from_file_location"):
                arg = node.args[0] if node.args else None
                assert isinstance(arg, ast.Constant) and arg.value in THIRD_PARTY_PROBES, \
                    f"{rel}:{node.lineno} imports by a computed name"


def test_runtime_library_never_imports_a_model_directory():
    for rel, path in project_sources():
        top = rel.split(os.sep)[0]
        imports = {m.split(".")[0] for m in imported_modules(parsed(path)) if m}
        if top == "common" and not rel.startswith(os.path.join("common", "tools")):
            assert not imports & set(MODEL_DIRS), f"{rel} imports {imports & set(MODEL_DIRS)}"
            assert not any(m.startswith("common.tools") for m in module_level_imports(
                parsed(path).body)), f"{rel} imports a tool at module level"
        if top in MODEL_DIRS:
            others = imports & (set(MODEL_DIRS) - {top})
            assert not others, f"{rel} imports another model directory: {others}"


def test_sys_path_is_edited_only_to_insert_the_repository_root():
    for rel, path in project_sources():
        with open(path) as f:
            lines = [l.strip() for l in f if "sys.path" in l]
        for line in lines:
            assert line.startswith("sys.path.insert(0, os.path.dirname(os.path.dirname("), \
                f"{rel}: {line}"
            depth = rel.count(os.sep) + 1  # dirname() calls that reach the repository root
            assert line.count("os.path.dirname(") == depth, f"{rel}: {line}"


TRACE = """
import json, os, runpy, sys, traceback
import torch
repo, train_py = sys.argv[1], sys.argv[2]
def first_step(self, *args, **kwargs):
    frames = [f.filename for f in traceback.extract_stack() if f.filename.startswith(repo)]
    modules = sorted({m.__file__ for m in list(sys.modules.values())
                      if (getattr(m, "__file__", None) or "").startswith(repo)})
    print("FIRST-STEP " + json.dumps({"frames": frames, "modules": modules}), flush=True)
    os._exit(0)
torch.optim.SGD.step = first_step
sys.argv = [train_py] + sys.argv[3:]
runpy.run_path(train_py, run_name="__main__")
"""


@pytest.mark.e2e
@pytest.mark.parametrize("model", MODEL_DIRS)
def test_path_to_the_first_optimizer_step(model, tiny_configs, synthetic_root, tmp_path):
    """As ``bash test/train_full_1p.sh --data_path=...`` runs it (real data: no generator)."""
    if model == "PSPNet":
        from PSPNet.tools.synthetic_voc import ensure_synthetic_voc
        data_path = ensure_synthetic_voc()
    else:
        data_path = synthetic_root
    train_py = os.path.join(REPO, model, "train.py")
    proc = subprocess.run([sys.executable, "-c", TRACE, REPO, train_py, "--config",
                           tiny_configs[model], "--data_path", data_path, "--device", "cpu",
                           "--work-dir", str(tmp_path)], capture_output=True, text=True,
                          timeout=600, cwd=os.path.join(REPO, model))
    assert "FIRST-STEP " in proc.stdout, proc.stdout[-2000:] + proc.stderr[-2000:]
    line = next(l for l in proc.stdout.splitlines() if l.startswith("FIRST-STEP "))
    trace = json.loads(line[len("FIRST-STEP "):])
    frames = [os.path.relpath(f, REPO) for f in trace["frames"]]
    dirs = [f.split(os.sep)[0] for f in frames]
    assert dirs[0] == model and set(dirs) <= {model, "common"}, frames
    first_common = dirs.index("common")
    assert all(d == "common" for d in dirs[first_common:]), f"callback into {model}: {frames}"
    modules = [os.path.relpath(f, REPO) for f in trace["modules"]]
    tops = {m.split(os.sep)[0] for m in modules}
    assert tops <= {model, "common"}, modules
    assert not [m for m in modules if os.sep + "tools" + os.sep in m], modules
