"""SBD conversion and the synthetic VOC + SBD generator."""
