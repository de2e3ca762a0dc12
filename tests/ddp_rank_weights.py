"""
``train_net.py`` for the DDP test: the same command line, and every process saves the weights it
holds when training ends to ``$RANK_WEIGHTS_DIR/weights_rank<R>.pth`` (a checkpoint holds rank
0's only). Run by tests/test_train_net.py:

  python tests/ddp_rank_weights.py --config-file CFG --num-gpus 2 --dist-url auto [key=value ...]
"""

import importlib.util
import os
from pathlib import Path

import torch

from detectron2.engine import default_argument_parser
from detectron2.utils import comm

from pvt_fpn_d2.compat import launch

REPO = Path(__file__).resolve().parents[1]


def main(args):
    spec = importlib.util.spec_from_file_location("train_net", REPO / "train_net.py")
    train_net = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train_net)

    class RecordingTrainer(train_net.Trainer):
        def train(self, start_iter: int, max_iter: int):
            super().train(start_iter, max_iter)
            model = getattr(self.model, "module", self.model)
            path = Path(os.environ["RANK_WEIGHTS_DIR"]) / f"weights_rank{comm.get_rank()}.pth"
            torch.save({k: v.detach().clone() for k, v in model.state_dict().items()}, path)

    train_net.Trainer = RecordingTrainer  # what do_train builds
    return train_net.main(args)


if __name__ == "__main__":
    args = default_argument_parser().parse_args()
    launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )
