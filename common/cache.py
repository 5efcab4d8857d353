"""The cache folder for generated data (synthetic datasets, data-check markers, benchmark
frames): ``$SEGZOO_CACHE``, default ``~/.cache/segzoo``."""
import os


def cache_dir():
    return os.environ.get("SEGZOO_CACHE", os.path.join(os.path.expanduser("~"), ".cache",
                                                       "segzoo"))
