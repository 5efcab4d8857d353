"""Shared runtime and segmentation plumbing used by every model directory.

Flat modules, one concern each: ``device``, ``distributed``, ``amp``, ``config``,
``cityscapes`` (dataset, label mapping, converter), ``transforms``, ``synthetic_cityscapes``,
``metrics``, ``lr_schedule``, ``checkpoint``, ``logfmt`` (the log-line format the scripts
parse), ``resnet`` and ``pretrained`` (backbones and ImageNet weight loaders), ``layers``
(conv-bn-act and FCN head), ``engine`` (training / evaluation loop), ``train_cli`` (the shared
train.py entry point), ``onnx_export`` and ``visualize``.
"""
