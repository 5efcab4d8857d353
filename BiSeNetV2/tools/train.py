"""The seed's (PaddleSeg's) training command, as its README types it in BiSeNetV2/:

    python tools/train.py --config configs/bisenet/bisenet_cityscapes_1024x1024_160k.yml \
        --do_eval --use_vdl --save_interval 500 --save_dir output

runs BiSeNetV2's own train.py with the same flags (``--use_vdl``: TensorBoard scalars instead
of VisualDL's, in <save_dir>/tensorboard; ``--do_eval``: evaluation, our default). For several
devices, PaddleSeg's ``python -m paddle.distributed.launch tools/train.py ...`` becomes
``python3 -m torch.distributed.run --nproc_per_node=8 tools/train.py ...`` (or
``bash test/train_full_8p.sh``).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from BiSeNetV2.train import main  # noqa: E402
from common.errors import user_errors  # noqa: E402

if __name__ == "__main__":
    with user_errors():
        main()
