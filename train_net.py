#!/usr/bin/env python
"""
Train and evaluate PVT-v2 detectors from LazyConfig files, like detectron2's
tools/lazyconfig_train_net.py.

  python train_net.py --config-file configs/COCO/mask_rcnn_pvt_v2_b2_fpn_1x.py --num-gpus 8
  python train_net.py --config-file CFG --eval-only train.init_checkpoint=output/model_final.pth
  python train_net.py --config-file CFG --resume          # from train.output_dir/last_checkpoint

Any config key can be overridden on the command line as key=value. Without GPUs everything
runs on the CPU, and --num-gpus N starts N CPU processes (gloo). CFG is a file or a name of the
package's model zoo, e.g. COCO/mask_rcnn_pvt_v2_b2_fpn_1x.py (pvt_fpn_d2.model_zoo).
"""

import argparse
import json
import logging
import os

# known third-party notices are hidden by exact message before anything emits them
from pvt_fpn_d2.cli import parse_args, silence_known_warnings  # isort: skip

silence_known_warnings()

import torch  # noqa: E402

from detectron2.config import LazyConfig, instantiate  # noqa: E402
from detectron2.engine import default_argument_parser, default_setup, hooks  # noqa: E402
from detectron2.engine.defaults import create_ddp_model  # noqa: E402
from detectron2.evaluation import inference_on_dataset, print_csv_format  # noqa: E402
from detectron2.utils import comm  # noqa: E402
from detectron2.utils.logger import setup_logger  # noqa: E402

from pvt_fpn_d2 import PVTCheckpointer  # noqa: E402
from pvt_fpn_d2.compat import launch  # noqa: E402
from pvt_fpn_d2.config import apply_overrides  # noqa: E402
from pvt_fpn_d2.model_zoo import resolve_config_file  # noqa: E402
from pvt_fpn_d2.engine import (  # noqa: E402
    Trainer,
    amp_dtype,
    check_classes,
    check_data_fits_model,
    resolve_device,
)
from pvt_fpn_d2.engine.checkpoint import check_writable_folder  # noqa: E402
from pvt_fpn_d2.engine.ema import EMA_KEY, build_ema_hook  # noqa: E402
from pvt_fpn_d2.engine.trainer import checked_writers  # noqa: E402

logger = logging.getLogger("pvt_fpn_d2")


def do_test(cfg, model):
    if "evaluator" not in cfg.dataloader:
        return {}
    device_type = resolve_device(cfg.train.device).split(":")[0]
    with torch.autocast(
        device_type, amp_dtype(cfg.train.amp.precision), enabled=cfg.train.amp.enabled
    ):
        ret = inference_on_dataset(
            model, instantiate(cfg.dataloader.test), instantiate(cfg.dataloader.evaluator)
        )
    if comm.is_main_process() and ret:
        print_csv_format(ret)
        with open(os.path.join(cfg.train.output_dir, "eval_results.json"), "w") as f:
            json.dump(ret, f, indent=2)
    return ret


def build_model(cfg):
    device = resolve_device(cfg.train.device)
    model = instantiate(cfg.model).to(device)
    return model, device


def wrap_ddp(cfg, model, device):
    # CPU processes (gloo) take no device_ids
    return create_ddp_model(
        model, **dict(cfg.train.ddp, **({"device_ids": None} if device == "cpu" else {}))
    )


def do_train(args, cfg):
    model, device = build_model(cfg)
    logger.info("Model:\n{}".format(model))
    check_classes(cfg, model)
    check_data_fits_model(cfg, model)

    cfg.optimizer.params.model = model
    optim = instantiate(cfg.optimizer)
    train_loader = instantiate(cfg.dataloader.train)

    model = wrap_ddp(cfg, model, device)
    trainer = Trainer(
        model,
        train_loader,
        optim,
        amp=cfg.train.amp.precision if cfg.train.amp.enabled else None,
        clip_grad_norm=cfg.train.clip_grad.max_norm if cfg.train.clip_grad.enabled else 0.0,
        device_type=device.split(":")[0],
    )
    # train.ema: an average of the weights, evaluated and saved (pvt_fpn_d2/engine/ema.py)
    ema = build_ema_hook(cfg.train.get("ema"), model)
    extra = {EMA_KEY: ema.ema} if ema else {}
    checkpointer = PVTCheckpointer(model, cfg.train.output_dir, trainer=trainer, **extra)
    main = comm.is_main_process()
    best = cfg.train.best_checkpoint
    trainer.register_hooks(
        [
            hooks.IterationTimer(),
            hooks.LRScheduler(scheduler=instantiate(cfg.lr_multiplier)),
            ema,  # before the checkpointer: the last iteration's model is the average
            hooks.PeriodicCheckpointer(checkpointer, **cfg.train.checkpointer) if main else None,
            hooks.EvalHook(
                cfg.train.eval_period, lambda: do_test(cfg, ema.eval_model() if ema else model)
            ),
            (
                hooks.BestCheckpointer(cfg.train.eval_period, checkpointer, best.metric, best.mode)
                if main and best.metric
                else None
            ),
            (
                hooks.PeriodicWriter(
                    checked_writers(cfg.train.output_dir, cfg.train.max_iter),
                    period=cfg.train.log_period,
                )
                if main
                else None
            ),
        ]
    )

    checkpointer.resume_or_load(cfg.train.init_checkpoint, resume=args.resume)
    start_iter = trainer.iter + 1 if args.resume and checkpointer.has_checkpoint() else 0
    trainer.train(start_iter, cfg.train.max_iter)


def load_config(args):
    """The config of ``--config-file`` (a file, or a model-zoo name such as
    ``COCO/mask_rcnn_pvt_v2_b2_fpn_1x.py``) with the command line's overrides."""
    args.config_file = resolve_config_file(args.config_file)
    return apply_overrides(LazyConfig.load(args.config_file), args.opts)


def get_parser() -> argparse.ArgumentParser:
    """The command line: detectron2's ``default_argument_parser`` (``--config-file``,
    ``--resume``, ``--eval-only``, ``--num-gpus`` ...) with the trailing ``key=value`` overrides
    in ``opts``."""
    return default_argument_parser()


def main(args):
    cfg = load_config(args)
    # a read-only or unusable train.output_dir stops here, named, before anything is written
    check_writable_folder(cfg.train.output_dir, "into train.output_dir", then="run again")
    default_setup(cfg, args)
    setup_logger(cfg.train.output_dir, distributed_rank=comm.get_rank(), name="pvt_fpn_d2")

    if args.eval_only:
        model, device = build_model(cfg)
        check_classes(cfg, model, splits=("test",))
        check_data_fits_model(cfg, model, splits=("test",))
        model = wrap_ddp(cfg, model, device)
        PVTCheckpointer(model).load(cfg.train.init_checkpoint)
        return do_test(cfg, model)
    do_train(args, cfg)


if __name__ == "__main__":
    # options typed after the key=value overrides (--resume, --eval-only, ...) count too
    args = parse_args(get_parser())
    launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )
