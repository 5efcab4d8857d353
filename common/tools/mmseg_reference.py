"""Build mmsegmentation 1.2.2's version of one of our models, for the fidelity fixtures and the
side-by-side benchmark. Needs mmseg installed (README, "Performance"), never a project dependency.
"""
import os
import sys
import types

# our model name -> mmseg config (relative to mmseg's bundled configs)
MMSEG_CONFIGS = {
    "BiSeNetV1_r18": "bisenetv1/bisenetv1_r18-d32_4xb4-160k_cityscapes-1024x1024.py",
    "BiSeNetV1": "bisenetv1/bisenetv1_r50-d32_4xb4-160k_cityscapes-1024x1024.py",
    "BiSeNetV2": "bisenetv2/bisenetv2_fcn_4xb4-160k_cityscapes-1024x1024.py",
    "ICNet": "icnet/icnet_r50-d8_4xb2-80k_cityscapes-832x832.py",
    "PSPNet": "pspnet/pspnet_r50-d8_4xb4-20k_voc12aug-512x512.py",
}


def stub_mmcv_ext():
    """mmseg imports mmcv.ops, which needs the compiled ``mmcv._ext`` (absent from mmcv-lite):
    stand in for it; none of these models calls it."""
    if "mmcv._ext" in sys.modules:
        return
    ext = types.ModuleType("mmcv._ext")

    def _missing(name):
        if name.startswith("__"):
            raise AttributeError(name)

        def fail(*args, **kwargs):
            raise RuntimeError(f"mmcv._ext.{name} is not built")
        return fail
    ext.__getattr__ = _missing
    sys.modules["mmcv._ext"] = ext


def _replace_syncbn(node):
    if isinstance(node, dict):
        return {k: ("BN" if k == "type" and v == "SyncBN" else _replace_syncbn(v))
                for k, v in node.items()}
    if isinstance(node, list):
        return [_replace_syncbn(v) for v in node]
    return node


def mmseg_config(config_rel):
    import mmseg
    from mmengine import Config
    return Config.fromfile(os.path.join(os.path.dirname(mmseg.__file__), ".mim", "configs",
                                        config_rel))


def build_mmseg(config_rel):
    """The mmseg segmentor of ``config_rel`` (SyncBN -> BN, no pretrained weights)."""
    stub_mmcv_ext()
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules
    register_all_modules()
    model_cfg = _replace_syncbn(mmseg_config(config_rel).model.to_dict())
    model_cfg.pop("data_preprocessor", None)
    model_cfg.pop("pretrained", None)
    if isinstance(model_cfg.get("backbone"), dict):
        model_cfg["backbone"].pop("init_cfg", None)
        if isinstance(model_cfg["backbone"].get("backbone_cfg"), dict):
            model_cfg["backbone"]["backbone_cfg"].pop("init_cfg", None)
    return MODELS.build(model_cfg)
