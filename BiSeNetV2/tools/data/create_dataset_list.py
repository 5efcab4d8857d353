"""The seed's (PaddleSeg's) list maker, as its README types it in BiSeNetV2/:

    python tools/data/create_dataset_list.py data/cityscapes --type cityscapes --separator ","

Writes ``train.txt``, ``val.txt`` and ``test.txt`` in the dataset root, one
``leftImg8bit/<split>/<city>/<frame>_leftImg8bit.png<sep>gtFine/<split>/<city>/<frame>_gtFine_labelTrainIds.png``
line per frame (paths relative to the root), as PaddleSeg's Cityscapes dataset reads them.
Our training lists the folders itself and does not need these files.
"""
import os
import sys

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))))

from common.checkpoint import atomic_write_bytes  # noqa: E402
from common.cityscapes import find_pairs  # noqa: E402
from common.errors import ArgParser, UserError, user_errors  # noqa: E402

SPLITS = ("train", "val", "test")


def main(argv=None):
    p = ArgParser(description="PaddleSeg's create_dataset_list.py for Cityscapes.")
    p.add_argument("dataset_root")
    p.add_argument("--type", default="cityscapes",
                   help="dataset type (only cityscapes is supported here)")
    p.add_argument("--separator", default=" ", help="between image and label path")
    args = p.parse_args(argv)
    if args.type != "cityscapes":
        raise UserError(f"--type {args.type} is not supported here; only cityscapes")
    root = os.path.abspath(args.dataset_root)
    splits = [s for s in SPLITS if os.path.isdir(os.path.join(root, "leftImg8bit", s))]
    if not splits:
        raise UserError(f"dataset_root {root} has no leftImg8bit/train, val or test folder; "
                        "pass the Cityscapes root")
    for split in splits:
        lines = [f"{os.path.relpath(image, root)}{args.separator}{os.path.relpath(label, root)}\n"
                 for image, label in sorted(find_pairs(root, split))]
        atomic_write_bytes(os.path.join(root, f"{split}.txt"),
                           lambda f, text="".join(lines): f.write(text.encode()))
        print(f"{split}.txt: {len(lines)} lines")


if __name__ == "__main__":
    with user_errors():
        main()
