"""Tools that training never imports: benchmarks, the mmseg reference, synthetic data
generators, the Cityscapes converter and curve plotting."""
