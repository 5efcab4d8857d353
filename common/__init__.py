"""The library every model directory's scripts call; it never imports a model directory.

Runtime: ``device``, ``distributed``, ``amp``, ``stop_signals``, ``errors``, ``run_logger``.
Recipes and flags: ``config``, ``cli``. Data: ``cityscapes``, ``datasets``, ``data``,
``data_check``, ``transforms``, ``device_augment``, ``cache``. Networks: ``layers``, ``resnet``,
``pretrained``, ``segmentor``, ``fuse``. Training: ``training`` (run start, the loop object,
resume), ``losses``, ``lr_schedule``, ``checkpoint``. Evaluation and results: ``evaluation``,
``inference``, ``metrics``, ``visualize``, ``logfmt`` (the log-line format), ``result_log``
(the ModelZoo result log), ``tensorboard_log``. Export and demo: ``export``, ``demo``.
``common/tools/`` holds what training never imports (benchmarks, mmseg reference, synthetic
generators, converters, plotting).
"""
