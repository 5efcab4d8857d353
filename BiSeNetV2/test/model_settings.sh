# BiSeNetV2's settings for the shared ModelZoo script body (common/modelzoo.sh).
ZOO_RECIPE=bisenetv2_fcn_cityscapes-1024x1024_160k.yaml       # with --data_path
ZOO_SMOKE=bisenetv2_fcn_synthetic-smoke.yaml               # without: synthetic data
ZOO_SYNTHETIC=common.synthetic_cityscapes                     # prints the synthetic root
ZOO_PERF_ITERS=200                                            # performance run, real data
ZOO_PERF_ITERS_SYNTHETIC=30                                   # performance run, synthetic
