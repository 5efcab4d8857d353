"""What a model directory tells the shared tools (train, export, demo) about its network."""
from dataclasses import dataclass
from typing import Callable, Optional


@dataclass
class ModelSpec:
    name: str                     # "BiSeNetV1": checkpoints record it, scripts print it
    build_model: Callable         # network class: the config's ``model:`` section is its kwargs
    model_dir: str                # the model directory; its configs/ holds the recipes
    default_config: str           # file name under configs/: the recipe for real data
    smoke_config: str             # the default without --data_path (synthetic data)
    pretrained_target: Optional[Callable] = None  # model -> module that takes ImageNet weights
    # (logits, label, ignore_index, **config loss.sampler) -> per-pixel loss weights
    pixel_sampler: Optional[Callable] = None
    demo_config: Optional[str] = None  # demo.py's default --config (file under configs/)
    onnx_input_name: str = "input"     # pth2onnx.py's default --input-name
