"""
Running a benchmark: the child processes (forked from a fork server that has imported the
libraries), the alternated timing child and one peak-memory child per model, and the comparison.
"""

import contextlib
import ctypes
import json
import logging
import multiprocessing
import os
import time
import traceback
from dataclasses import asdict
from typing import Any, Dict, List, Optional, Sequence


from .settings import BenchmarkSettings, ModelSpec, R50_FPN, environment_info, padded_size
from .models import (
    SavedActivations,
    _is_pvt_config,
    _select,
    _target_name,
    attention_modules,
    build_model,
    load_model_config,
    make_inference_batch,
    make_train_batch,
)
from .measure import (
    ComponentTimer,
    PeakMemory,
    count_flops,
    latency_stats,
    pair_ratio_stats,
    time_alternating,
)

# glibc mallopt(M_MMAP_THRESHOLD, 64 KiB), see _return_freed_memory_to_the_system
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_BYTES = 65536

logger = logging.getLogger(__name__)


def _autocast(device: str, amp: str):
    import torch

    if not amp:
        return contextlib.nullcontext()
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}[amp]
    return torch.autocast(device_type=device.split(":")[0], dtype=dtype)


class _Runner:
    """One model of a measurement: its ``step()`` and what it records on the way."""

    def __init__(self, spec: ModelSpec, settings: BenchmarkSettings, breakdown: bool):
        import torch

        from pvt_fpn_d2.modeling.backbone import PVTv2Backbone

        self.spec = spec
        self.s = settings
        task, device = settings.task, settings.device
        self.model = build_model(spec, task, device, settings.seed)
        self.sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
        self.first_losses: Optional[Dict[str, float]] = None
        self.timer: Optional[ComponentTimer] = None
        self.info: Dict[str, Any] = {
            "label": spec.label,
            "config": spec.config,
            "opts": list(spec.opts),
            "act_checkpoint": spec.act_checkpoint,
            "params_m": sum(p.numel() for p in self.model.parameters()) / 1e6,
            "module": type(self.model).__name__,
        }
        bottom_up = self.model if task == "backbone" else self.model.backbone.bottom_up
        self.info["bottom_up"] = type(bottom_up).__name__
        self.memory_format = _apply_layout(bottom_up, settings)
        self.info["memory_format"] = _memory_format(bottom_up)
        self.info["threads"] = torch.get_num_threads()
        if isinstance(bottom_up, PVTv2Backbone):
            attn = attention_modules(bottom_up)
            self.info["timm_variant"] = bottom_up.name
            self.info["channels_last"] = bottom_up.channels_last
            self.info["attention_modules"] = len(attn)
            self.info["fused_attn"] = all(m.fused_attn for m in attn)
            self.info["use_act_checkpoint"] = all(
                s.grad_checkpointing for s in bottom_up.model.stages
            )

        if task == "backbone":
            h, w = padded_size(settings.image_size)
            g = torch.Generator().manual_seed(settings.seed)
            self.inputs = torch.randn(settings.batch_size, 3, h, w, generator=g).to(device)
            self.inputs = self.inputs.contiguous(memory_format=self.memory_format)
            self.info["input_memory_format"] = _format_name(self.inputs)
            self.step = self._backbone_step
        elif task == "inference":
            self.inputs = make_inference_batch(
                settings.image_size, settings.batch_size, settings.seed
            )
            if breakdown:
                self.timer = ComponentTimer(self.model, self.sync)
            generator = getattr(self.model, "proposal_generator", None)
            if generator is not None:
                generator.register_forward_hook(self._count_proposals)
            self.step = self._inference_step
        else:
            from detectron2.utils.events import EventStorage

            self.inputs = make_train_batch(
                self.model,
                settings.image_size,
                settings.batch_size,
                settings.instances,
                settings.seed,
            )
            params = [p for p in self.model.parameters() if p.requires_grad]
            self.optimizer = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.05)
            self.scaler = (
                torch.amp.GradScaler(device.split(":")[0]) if settings.amp == "fp16" else None
            )
            self.storage = EventStorage(0)  # detectron2's losses log into an event storage
            self.step = self._train_step

    def _backbone_step(self):
        import torch

        with torch.no_grad(), _autocast(self.s.device, self.s.amp):
            return self.model(self.inputs)

    def _inference_step(self):
        import torch

        t0 = time.perf_counter()
        with torch.no_grad(), _autocast(self.s.device, self.s.amp):
            out = self.model(self.inputs)
        if self.timer is not None:
            self.sync()
            self.timer.end_iteration(time.perf_counter() - t0)
        if "instances" in out[0]:
            # random weights: the heads' work depends on these, show them
            self.info["detections_per_image"] = [len(o["instances"]) for o in out]
        return out

    def _count_proposals(self, module, args, output):
        import torch

        self.info["proposals_per_image"] = [len(p) for p in output[0]]
        # ROIAlign with sampling_ratio=0 samples more points in larger boxes: show their size
        sides = [p.proposal_boxes.area().clamp_min(0).sqrt() for p in output[0]]
        self.info["proposal_mean_side_px"] = float(torch.cat(sides).mean()) if sides else 0.0

    def _train_step(self):
        import torch

        first = self.first_losses is None
        if first:
            # the same random state for every model's first step: equal losses for equal models
            torch.manual_seed(self.s.seed + 1)
            saved = SavedActivations(self.model.backbone.bottom_up)
        with self.storage, _autocast(self.s.device, self.s.amp):
            loss_dict = self.model(self.inputs)
        losses = sum(loss_dict.values())
        if first:
            saved.remove()
            self.info["bottom_up_saved_activations_mb"] = saved.bytes / 2**20
            self.first_losses = {k: float(v.detach()) for k, v in loss_dict.items()}
            self.first_losses["total"] = float(losses.detach())
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(losses).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            losses.backward()
            self.optimizer.step()
        return loss_dict

    def flops(self) -> Dict[str, Any]:
        """GFLOPs per image; the whole model when detectron2's tracer manages, else the
        bottom-up network."""
        import torch

        if self.s.task == "backbone":
            out = count_flops(self.model, (self.inputs[:1],), detectron2_model=False)
            out["flops_scope"] = "backbone.bottom_up"
            return out
        image = make_inference_batch(self.s.image_size, 1, self.s.seed)
        try:
            out = count_flops(self.model, image, detectron2_model=True)
            out["flops_scope"] = "whole model (inference forward)"
            return out
        except Exception as e:  # noqa: BLE001 - fall back to what can be counted
            logger.warning("FLOP count of the whole model failed (%s); counting the backbone", e)
            h, w = padded_size(self.s.image_size)
            x = torch.zeros(1, 3, h, w, device=self.s.device)
            out = count_flops(self.model.backbone.bottom_up, (x,), detectron2_model=False)
            out["flops_scope"] = f"backbone.bottom_up only (whole model failed: {e})"
            return out


def _format_name(t) -> str:
    import torch

    if (
        t.dim() == 4
        and t.is_contiguous(memory_format=torch.channels_last)
        and not (t.is_contiguous())
    ):
        return "channels_last"
    return "contiguous"


def _memory_format(bottom_up) -> str:
    """The memory format of the bottom-up network's convolution weights (of the first one)."""
    import torch

    for m in bottom_up.modules():
        if isinstance(m, torch.nn.Conv2d) and m.weight.shape[-1] > 1:
            return _format_name(m.weight)
    return "contiguous"


def _apply_layout(bottom_up, settings: BenchmarkSettings):
    """Put the bottom-up network in the layout ``settings.layout`` asks for (see
    :class:`BenchmarkSettings`); the memory format its input should take."""
    import torch

    from pvt_fpn_d2.modeling.backbone import PVTv2Backbone

    if settings.device != "cpu":
        return torch.contiguous_format  # channels-last is a CPU choice here
    if isinstance(bottom_up, PVTv2Backbone):
        if settings.layout == "default" and bottom_up._channels_last_setting is None:
            bottom_up._channels_last_setting = False  # an explicit override still wins
            bottom_up._apply_layout()
        return torch.channels_last if bottom_up.channels_last else torch.contiguous_format
    if settings.layout == "best":
        bottom_up.to(memory_format=torch.channels_last)
        return torch.channels_last
    return torch.contiguous_format


def _timm_reference(backbone, device: str):
    """timm's own pvt_v2 model (unpruned) holding the wrapper's weights, and a forward that calls
    its patch embedding and stages one by one, keeping the wrapper's stages. It does not go
    through ``forward_intermediates``, the wrapper's path, so a wrapper that picked, ordered or
    computed its outputs differently from timm's stages would show a difference."""
    import timm
    import torch

    ref = timm.create_model(backbone.name, pretrained=False, num_classes=0)
    missing, unexpected = ref.load_state_dict(backbone.model.state_dict(), strict=False)
    kept = len(backbone.model.stages)
    bad = [k for k in missing if not any(k.startswith(f"stages.{i}.") for i in range(kept, 9))]
    if unexpected or bad:
        raise RuntimeError(f"timm reference: missing {bad}, unexpected {unexpected}")
    if backbone.channels_last:  # the same weights, in the same layout
        ref.to(memory_format=torch.channels_last)
    ref = ref.to(device).eval()
    indices = list(backbone._out_indices)

    def forward(x):
        outs = []
        x = ref.patch_embed(x)
        for i, stage in enumerate(ref.stages[: max(indices) + 1]):
            x = stage(x)
            if i in indices:
                outs.append(x)
        return outs

    return ref, forward


def _profile(runner: _Runner, top: int) -> List[Dict[str, Any]]:
    """The ``top`` operators by self time over two steps (torch.profiler), printed and returned."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU]
    cuda = runner.s.device.startswith("cuda")
    if cuda:
        activities.append(ProfilerActivity.CUDA)
    if runner.timer is not None:
        runner.timer.remove()
    with profile(activities=activities, record_shapes=False) as prof:
        for _ in range(2):
            runner.step()
            runner.sync()
    key = "self_cuda_time_total" if cuda else "self_cpu_time_total"
    events = prof.key_averages()
    print(f"\n== profile of {runner.spec.label} ({runner.s.task}, 2 steps) ==")
    print(events.table(sort_by=key, row_limit=top))
    total = sum(getattr(e, key) for e in events) or 1.0
    rows = sorted(events, key=lambda e: getattr(e, key), reverse=True)[:top]
    return [
        {
            "op": e.key,
            "self_ms_per_step": getattr(e, key) / 1000.0 / 2,
            "share": getattr(e, key) / total,
            "calls_per_step": e.count / 2,
        }
        for e in rows
    ]


def _child_main(job: Dict[str, Any]) -> Dict[str, Any]:
    """Run one measurement job (see :func:`run_benchmark`) and return its results."""
    import torch

    s = BenchmarkSettings(**{**job["settings"], "image_size": tuple(job["settings"]["image_size"])})
    if s.threads:
        torch.set_num_threads(s.threads)
    specs = [ModelSpec(**m) for m in job["models"]]
    memory = job["memory"]
    runners = [_Runner(spec, s, breakdown=not memory) for spec in specs]
    fns = [r.step for r in runners]
    result: Dict[str, Any] = {"environment": environment_info(s.device), "models": []}

    reference = None
    if job.get("vs_timm"):
        wrapper = runners[0]
        if wrapper.info.get("bottom_up") != "PVTv2Backbone" or s.task != "backbone":
            raise ValueError("--vs-timm needs the backbone task and a PVT-v2 config")
        ref_model, ref_forward = _timm_reference(wrapper.model, s.device)
        reference = (ref_model, ref_forward)

        def timm_step():
            with torch.no_grad(), _autocast(s.device, s.amp):
                return ref_forward(wrapper.inputs)

        fns.append(timm_step)

    sync = runners[0].sync
    peak = PeakMemory(s.device)
    if memory:
        warmup, iters = max(1, min(s.warmup, 1)), s.memory_iters
        # warm-up first: one-time allocations (optimizer state, allocator caches) are baseline
        time_alternating(fns, 0, warmup, sync)
        peak.reset()
        times = time_alternating(fns, iters, 0, sync)
        mem = peak.read()
    else:
        for r in runners:  # warm-up iterations are not part of the breakdown
            if r.timer is not None:
                time_alternating([r.step], 0, s.warmup, sync)
                r.timer.discard()
        warmup = 0 if any(r.timer is not None for r in runners) else s.warmup
        times = time_alternating(fns, s.iters, warmup, sync)
        mem = {}

    for r, t in zip(runners, times):
        entry = dict(r.info)
        entry.update(latency_stats(t, s.batch_size))
        entry.update(mem)
        if r.first_losses is not None:
            entry["first_step_losses"] = r.first_losses
        if r.timer is not None:
            entry["components"] = r.timer.summary()
            r.timer.remove()
        result["models"].append(entry)

    if reference is not None:
        ref_model, ref_forward = reference
        wrapper = runners[0]
        with torch.no_grad(), _autocast(s.device, s.amp):
            ours = list(wrapper.model(wrapper.inputs).values())
            theirs = ref_forward(wrapper.inputs)
        diff = _max_abs_diff(ours, theirs)
        timm_entry = {"label": f"timm {wrapper.model.name} stages called one by one"}
        timm_entry.update(latency_stats(times[-1], s.batch_size))
        result["vs_timm"] = {
            "timm": timm_entry,
            "max_abs_diff": diff,
            "time_ratio_wrapper_over_timm": pair_ratio_stats(times[0], times[-1]),
        }

    if not memory and len(runners) == 2 and s.task == "backbone":
        diff = _same_weights_output_diff(*runners)
        if diff is not None:
            result["outputs_a_vs_b"] = {"max_abs_diff": diff}

    if not memory and s.flops:
        for r, entry in zip(runners, result["models"]):
            entry.update(r.flops())
    if not memory and s.profile:
        for r, entry in zip(runners, result["models"]):
            entry["profile"] = _profile(r, s.profile)
    result["environment"]["load_average_1min_end"] = round(os.getloadavg()[0], 2)
    return result


def _same_weights_output_diff(a: "_Runner", b: "_Runner") -> Optional[float]:
    """Two backbones of one architecture (e.g. channels-last against the default layout): load
    A's weights into B and return the largest difference of their outputs on A's input, or None
    when the architectures differ."""
    import torch

    sa, sb = a.model.state_dict(), b.model.state_dict()
    if sa.keys() != sb.keys() or any(sa[k].shape != sb[k].shape for k in sa):
        return None
    b.model.load_state_dict(sa)  # copies into B's tensors: B keeps its memory format
    with torch.no_grad(), _autocast(a.s.device, a.s.amp):
        out_a, out_b = a.model(a.inputs), b.model(a.inputs)
    return _max_abs_diff(out_a.values(), out_b.values())


def _max_abs_diff(xs, ys) -> float:
    return max(float((x.float() - y.float()).abs().max()) for x, y in zip(xs, ys))


def _return_freed_memory_to_the_system() -> None:
    """glibc: mmap every allocation above 64 KiB, so that freed tensors leave the resident set
    (by default the threshold grows up to 32 MiB at run time and freed heap memory stays
    resident, blurring the peak). Used in the memory children only."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES)
    except (OSError, AttributeError):
        pass


def _child_entry(job: Dict[str, Any], conn) -> None:
    """Child process body: run the job, send ("ok", result) or ("error", traceback)."""
    try:
        if job["memory"]:
            _return_freed_memory_to_the_system()
        conn.send(("ok", _child_main(job)))
    except BaseException:  # noqa: BLE001 - reported to the parent
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


# the modules every child needs, imported once by the fork server (which runs no torch op, so
# forking it is safe; children start in well under a second instead of ~8 s)
_PRELOAD = ("torch", "timm", "detectron2.modeling", "detectron2.config", "benchmarks")


def _fork_server_context():
    """The multiprocessing context of the children; starts the fork server (~8 s of imports),
    so that calling this early lets the server start while the caller does other work."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(list(_PRELOAD))
    from multiprocessing import forkserver

    forkserver.ensure_running()
    return ctx


def _run_child(job: Dict[str, Any]) -> Dict[str, Any]:
    """Run a job in a new process, forked from a server that has the libraries imported."""
    ctx = _fork_server_context()
    receiver, sender = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child_entry, args=(job, sender), daemon=False)
    proc.start()
    sender.close()
    try:
        status, payload = receiver.recv()
    except EOFError:
        status, payload = "crashed", None
    proc.join()
    if status == "ok":
        return payload
    if status == "error":
        raise RuntimeError(f"The benchmark child process failed:\n{payload}")
    raise RuntimeError(
        f"The benchmark child process died (exit code {proc.exitcode}; -9 is usually the kernel's "
        f"out-of-memory killer). Job: {json.dumps(job)}"
    )


def run_benchmark(
    settings: BenchmarkSettings,
    models: Sequence[ModelSpec],
    compare_act_checkpoint: bool = False,
) -> Dict[str, Any]:
    """
    Measure one model, or compare two (``models[0]`` is A, ``models[1]`` is B: ratios are A/B,
    B being the reference), in child processes.

    Args:
        settings: what to measure.
        models: one or two model specs.
        compare_act_checkpoint: compare ``models[0]`` with activation checkpointing (A) against
            itself without (B): time ratio, peak memory ratio and first-step losses (train task).

    Returns:
        a JSON-serialisable dict: ``task``, ``settings``, ``environment``, ``models`` (one entry
        per model: latency, images/s, peak memory, GFLOPs, ...), and ``comparison``, ``vs_timm``
        and ``act_checkpoint`` where they apply.
    """
    s = settings
    if s.task == "eval":
        raise ValueError("the eval task has no models: use run_eval_benchmark")
    models = list(models)
    if not 1 <= len(models) <= 2:
        raise ValueError(f"need one or two models, got {len(models)}")
    if compare_act_checkpoint:
        if s.task != "train":
            raise ValueError("--compare-act-checkpoint needs --task train")
        if len(models) != 1:
            raise ValueError("--compare-act-checkpoint compares one config with itself")
        base = models[0]
        models = [
            ModelSpec(base.config, base.opts, True, base.label + " [act-checkpoint]"),
            ModelSpec(base.config, base.opts, False, base.label),
        ]
    if s.vs_timm and (len(models) != 1 or s.task != "backbone"):
        raise ValueError("--vs-timm needs --task backbone and no --compare")
    if len(models) == 2 and models[0].label == models[1].label:
        models[1].label += " (B)"
    _fork_server_context()  # starts while the configs load
    for m in models:  # the children may not share our working directory
        if m.config != R50_FPN:
            m.config = os.path.abspath(m.config)
    # config errors (a file, an override) here, before any child starts
    cfgs = [load_model_config(m, s.task) for m in models]
    pvt = [_is_pvt_config(_select(c, "model.backbone.bottom_up")) for c in cfgs]
    if any(m.act_checkpoint for m in models) and not any(pvt):
        raise ValueError(
            "Activation checkpointing needs a PVTv2Backbone bottom-up network; "
            + ", ".join(
                f"{m.label} has {_target_name(_select(c, 'model.backbone.bottom_up'))}"
                for m, c in zip(models, cfgs)
            )
        )

    jobs_settings = asdict(s)
    timing = _run_child(
        {
            "settings": jobs_settings,
            "models": [asdict(m) for m in models],
            "memory": False,
            "vs_timm": s.vs_timm,
        }
    )
    result: Dict[str, Any] = {
        "task": s.task,
        "settings": dict(jobs_settings, padded_size=list(padded_size(s.image_size))),
        "environment": timing["environment"],
        "models": timing["models"],
    }
    if "vs_timm" in timing:
        result["vs_timm"] = timing["vs_timm"]
    if "outputs_a_vs_b" in timing:
        result["outputs_a_vs_b"] = timing["outputs_a_vs_b"]
    for m, entry in zip(models, result["models"]):
        mem = _run_child({"settings": jobs_settings, "models": [asdict(m)], "memory": True})
        mem = mem["models"][0]
        for k in ("peak_memory_mb", "baseline_memory_mb", "peak_increase_mb", "memory_kind"):
            entry[k] = mem[k]
        if "first_step_losses" in mem:
            entry["first_step_losses_memory_child"] = mem["first_step_losses"]

    if len(models) == 2:
        result["comparison"] = _compare(result["models"][0], result["models"][1])
    if compare_act_checkpoint:
        ckpt, plain = result["models"]
        # losses from the two separate memory children (separate processes, same seed)
        la, lb = ckpt["first_step_losses_memory_child"], plain["first_step_losses_memory_child"]
        lc, lp = ckpt["first_step_losses"], plain["first_step_losses"]
        result["act_checkpoint"] = {
            "peak_memory_ratio": ckpt["peak_memory_mb"] / plain["peak_memory_mb"],
            "peak_memory_reduction": 1.0 - ckpt["peak_memory_mb"] / plain["peak_memory_mb"],
            "peak_increase_reduction": (
                1.0 - ckpt["peak_increase_mb"] / plain["peak_increase_mb"]
                if plain["peak_increase_mb"] > 0
                else None
            ),
            "time_ratio": result["comparison"]["latency"],
            # what autograd keeps of the bottom-up network's activations (exact, not a peak)
            "saved_activations_ratio": ckpt["bottom_up_saved_activations_mb"]
            / plain["bottom_up_saved_activations_mb"],
            "max_loss_diff_separate_processes": max(abs(la[k] - lb[k]) for k in lb),
            "max_loss_diff_same_process": max(abs(lc[k] - lp[k]) for k in lp),
            "determinism": "both models are built and stepped from the same seeds (torch RNG "
            "reseeded before each first step; checkpointing restores the RNG state when it "
            "recomputes), so drop path draws the same masks with the config's drop_path_rate",
        }
    return result


def _compare(a: Dict[str, Any], b: Dict[str, Any]) -> Dict[str, Any]:
    def ratio(key):
        va, vb = a.get(key), b.get(key)
        return va / vb if isinstance(va, (int, float)) and vb else None

    out = {
        "direction": f"A/B = {a['label']} / {b['label']}",
        "latency": pair_ratio_stats(a["latency_ms"]["all"], b["latency_ms"]["all"]),
        "latency_p90_ratio": a["latency_ms"]["p90"] / b["latency_ms"]["p90"],
        "images_per_s_ratio": a["images_per_s"] / b["images_per_s"],
        "peak_memory_ratio": ratio("peak_memory_mb"),
        "gflops_ratio": ratio("gflops"),
        "params_ratio": ratio("params_m"),
    }
    if "components" in a and "components" in b:
        out["components_ms_ratio"] = {
            k: a["components"][k]["ms"] / b["components"][k]["ms"]
            for k in a["components"]
            if k in b["components"] and b["components"][k]["ms"] > 0
        }
    return out
