"""PVTv2Backbone: detectron2's Backbone contract on top of timm's pvt_v2 (issue #3)."""

import pytest
import timm
import torch
from timm.layers import DropPath

from detectron2.config import get_cfg
from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY, FPN
from detectron2.modeling.backbone.fpn import LastLevelMaxPool
from detectron2.structures import ImageList

from pvt_fpn_d2 import PVT_V2_VARIANTS, PVTv2Backbone, add_pvt_v2_config, pvt_v2_out_channels

STAGES = ["res2", "res3", "res4", "res5"]


def _loss(out):
    # a random projection: the mean of a LayerNorm output would have (almost) no gradient
    g = torch.Generator().manual_seed(0)
    return sum((t * torch.randn(t.shape, generator=g)).sum() for t in out.values())


def _timm_reference(backbone: PVTv2Backbone) -> torch.nn.Module:
    """timm's own model (full, with classifier) holding the backbone's weights, in the same
    memory layout (channels-last on the CPU by default)."""
    ref = timm.create_model(backbone.name, pretrained=False)
    missing, unexpected = ref.load_state_dict(backbone.model.state_dict(), strict=False)
    assert set(missing) == {"head.weight", "head.bias"} and not unexpected
    if backbone.channels_last:
        ref.to(memory_format=torch.channels_last)
    return ref.eval()


@pytest.mark.parametrize("name", PVT_V2_VARIANTS)
def test_contract_for_every_variant(name):
    torch.manual_seed(0)
    backbone = PVTv2Backbone(name, drop_path_rate=0.0).eval()
    info = timm.create_model(name, pretrained=False).feature_info
    shapes = backbone.output_shape()
    assert list(shapes) == STAGES  # ordered by stride
    assert [s.channels for s in shapes.values()] == [i["num_chs"] for i in info]
    assert [s.stride for s in shapes.values()] == [4, 8, 16, 32]
    assert backbone.size_divisibility == 32
    assert backbone.padding_constraints == {"size_divisibility": 32}
    assert pvt_v2_out_channels(name, "res5") == shapes["res5"].channels
    with pytest.raises(ValueError, match="at least 32x32"):
        backbone(torch.randn(1, 3, 24, 224))

    fpn = FPN(
        bottom_up=backbone, in_features=STAGES, out_channels=256, top_block=LastLevelMaxPool()
    )
    assert fpn.size_divisibility == 32
    for h, w in [(224, 224), (200, 249)]:
        x = torch.randn(1, 3, h, w)
        # detectron2's models pad their input to size_divisibility before the FPN
        padded = ImageList.from_tensors([x[0]], fpn.size_divisibility).tensor
        ph, pw = padded.shape[-2:]
        assert (ph, pw) == (-(-h // 32) * 32, -(-w // 32) * 32)
        with torch.no_grad():
            feats = backbone(x)
            pyramid = fpn(padded)
        assert list(feats) == STAGES
        for f, t in feats.items():  # unpadded input: ceil(size / stride)
            s = shapes[f]
            assert t.shape == (1, s.channels, -(-h // s.stride), -(-w // s.stride)), (f, h, w)
        assert list(pyramid) == ["p2", "p3", "p4", "p5", "p6"]
        for p, t in pyramid.items():
            hw = (ph // 2 ** int(p[1]), pw // 2 ** int(p[1]))
            if p == "p6":  # LastLevelMaxPool: kernel 1, stride 2 on p5
                hw = (-(-ph // 32 // 2), -(-pw // 32 // 2))
            assert t.shape == (1, 256, *hw), (p, h, w)


@pytest.mark.parametrize("name", ["pvt_v2_b0", "pvt_v2_b2_li"])
def test_outputs_equal_timm_called_directly(name):
    """res2..res5 against timm's own modules called one by one, and res5 against timm's
    forward_features: not the wrapper's path (forward_intermediates), so a wrong stage, order,
    norm or layout in the wrapper shows."""
    torch.manual_seed(0)
    backbone = PVTv2Backbone(name, drop_path_rate=0.1).eval()
    ref = _timm_reference(backbone)
    x = torch.randn(2, 3, 96, 128)
    with torch.no_grad():
        ours = backbone(x)
        theirs, y = [], ref.patch_embed(x)
        for stage in ref.stages:
            y = stage(y)
            theirs.append(y)
        final = ref.forward_features(x)
    assert list(ours) == STAGES
    for a, b in zip(ours.values(), theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(ours["res5"], final, rtol=0, atol=0)


def test_odd_input_sizes_give_ceil_strided_maps():
    backbone = PVTv2Backbone("pvt_v2_b0").eval()
    with torch.no_grad():
        out = backbone(torch.randn(1, 3, 200, 249))
    assert [tuple(t.shape[-2:]) for t in out.values()] == [(50, 63), (25, 32), (13, 16), (7, 8)]


@pytest.mark.parametrize("size", [(31, 64), (64, 20), (8, 8)])
def test_input_below_32_px_is_a_clear_error(size):
    backbone = PVTv2Backbone("pvt_v2_b0")
    with pytest.raises(ValueError, match=rf"at least 32x32 pixels, got {size[0]}x{size[1]}"):
        backbone(torch.randn(1, 3, *size))


def test_minimum_input_of_32_px_works():
    backbone = PVTv2Backbone("pvt_v2_b0").eval()
    with torch.no_grad():
        out = backbone(torch.randn(1, 3, 32, 32))
    assert out["res5"].shape[-2:] == (1, 1)


def test_unknown_variant_lists_valid_names():
    with pytest.raises(
        ValueError, match=r"Unknown PVT-v2 variant 'pvt_v2_b9'.*pvt_v2_b0.*pvt_v2_b5"
    ):
        PVTv2Backbone("pvt_v2_b9")


@pytest.mark.parametrize(
    "out_features, message",
    [(["res6"], "subset"), ([], "subset"), (["res4", "res3"], "ordered by stride")],
)
def test_bad_out_features(out_features, message):
    with pytest.raises(ValueError, match=message):
        PVTv2Backbone("pvt_v2_b0", out_features=out_features)


def test_subset_of_outputs_prunes_unused_stages():
    backbone = PVTv2Backbone("pvt_v2_b0", out_features=["res3", "res4"]).eval()
    assert len(backbone.model.stages) == 3  # res5 stage dropped, so DDP sees no unused params
    with torch.no_grad():
        out = backbone(torch.randn(1, 3, 64, 64))
    assert list(out) == ["res3", "res4"]
    assert list(backbone.output_shape()) == ["res3", "res4"]


def test_drop_path_rate_reaches_the_blocks():
    backbone = PVTv2Backbone("pvt_v2_b2", drop_path_rate=0.1)
    rates = [m.drop_prob for m in backbone.modules() if isinstance(m, DropPath)]
    assert len(rates) > 0 and max(rates) == pytest.approx(0.1)
    assert not any(
        isinstance(m, DropPath) for m in PVTv2Backbone("pvt_v2_b0", drop_path_rate=0).modules()
    )


def test_every_parameter_gets_a_gradient():
    backbone = PVTv2Backbone("pvt_v2_b0").train()
    out = backbone(torch.randn(2, 3, 64, 64))
    _loss(out).backward()
    no_grad = [n for n, p in backbone.named_parameters() if p.grad is None or not p.grad.any()]
    assert no_grad == []


@pytest.mark.parametrize("freeze_at", [1, 3])
def test_freeze_at_freezes_stem_and_first_stages(freeze_at):
    # no stochastic depth: a dropped block would get no gradient by chance
    backbone = PVTv2Backbone("pvt_v2_b0", freeze_at=freeze_at, drop_path_rate=0.0).train()
    frozen_prefixes = ["patch_embed."] + [f"stages.{i}." for i in range(freeze_at - 1)]
    for n, p in backbone.model.named_parameters():
        assert p.requires_grad != any(n.startswith(f) for f in frozen_prefixes), n
    # frozen modules stay in eval mode (no stochastic depth, dropout) while the rest trains
    assert not backbone.model.patch_embed.training
    assert backbone.model.stages[-1].training
    before = {n: p.detach().clone() for n, p in backbone.named_parameters()}
    optimizer = torch.optim.AdamW(backbone.parameters(), lr=0.1, weight_decay=0.1)
    out = backbone(torch.randn(1, 3, 64, 64))
    _loss(out).backward()
    optimizer.step()
    for n, p in backbone.named_parameters():  # frozen values unchanged, the rest updated
        assert torch.equal(p, before[n]) == (not p.requires_grad), n


def saved_tensor_bytes(module, x):
    """(bytes of the tensors autograd keeps for the backward pass, output) of ``module(x)``."""
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = module(x)
    return total, out


def test_activation_checkpointing_keeps_less_for_backward_with_same_grads():
    """Proven by what autograd stores, not by a flag: checkpointed blocks keep only their inputs
    (b0 at 64x64: 2.3 MB instead of 17.6 MB), and the gradients are unchanged."""
    torch.manual_seed(0)
    plain = PVTv2Backbone("pvt_v2_b0", drop_path_rate=0.0)
    ckpt = PVTv2Backbone("pvt_v2_b0", drop_path_rate=0.0, use_act_checkpoint=True)
    ckpt.load_state_dict(plain.state_dict())
    x = torch.randn(1, 3, 64, 64)
    grads, saved = [], []
    for m in (plain, ckpt):
        m.train()
        nbytes, out = saved_tensor_bytes(m, x)
        saved.append(nbytes)
        sum((t**2).mean() for t in out.values()).backward()
        grads.append({n: p.grad for n, p in m.named_parameters()})
        for t in out.values():
            assert torch.isfinite(t).all()
    assert saved[1] <= 0.5 * saved[0], saved
    for n in grads[0]:
        torch.testing.assert_close(grads[0][n], grads[1][n], rtol=1e-5, atol=1e-6)


def test_traced_equals_eager():
    backbone = PVTv2Backbone("pvt_v2_b0").eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        traced = torch.jit.trace(backbone, x, strict=False)
        eager, jit = backbone(x), traced(x)
    for f in eager:
        torch.testing.assert_close(eager[f], jit[f])


def test_inside_detectron2_fpn():
    fpn = FPN(bottom_up=PVTv2Backbone("pvt_v2_b0"), in_features=STAGES, out_channels=64).eval()
    assert fpn.size_divisibility == 32
    with torch.no_grad():
        out = fpn(torch.randn(1, 3, 96, 64))
    assert [tuple(t.shape) for t in out.values()] == [
        (1, 64, 24, 16),
        (1, 64, 12, 8),
        (1, 64, 6, 4),
        (1, 64, 3, 2),
    ]


@pytest.mark.parametrize(
    "builder, out_features, expected",
    [
        ("build_pvt_v2_fpn_backbone", STAGES, ["p2", "p3", "p4", "p5", "p6"]),
        ("build_pvt_v2_retinanet_fpn_backbone", STAGES[1:], ["p3", "p4", "p5", "p6", "p7"]),
    ],
)
def test_yacs_builders_in_registry(builder, out_features, expected):
    cfg = get_cfg()
    add_pvt_v2_config(cfg)
    cfg.MODEL.PVT.NAME = "pvt_v2_b0"
    cfg.MODEL.PVT.OUT_FEATURES = out_features
    cfg.MODEL.FPN.IN_FEATURES = out_features
    cfg.MODEL.BACKBONE.NAME = builder
    backbone = BACKBONE_REGISTRY.get(builder)(cfg, ShapeSpec(channels=3))
    assert list(backbone.output_shape()) == expected
    assert [s.stride for s in backbone.output_shape().values()] == [
        2 ** int(p[1]) for p in expected
    ]
    if builder == "build_pvt_v2_retinanet_fpn_backbone":
        # P6 is computed from C5 (256 channels for b0), not from P5
        assert backbone.top_block.p6.in_channels == 256
        assert backbone.top_block.in_feature == "res5"


def test_yacs_channels_last_switch():
    cfg = add_pvt_v2_config(get_cfg())
    cfg.MODEL.PVT.NAME = "pvt_v2_b0"
    assert cfg.MODEL.PVT.CHANNELS_LAST is None  # automatic: channels-last on the CPU
    for flag in (False, True):
        cfg.MODEL.PVT.CHANNELS_LAST = flag
        bottom_up = BACKBONE_REGISTRY.get("build_pvt_v2_backbone")(cfg, ShapeSpec(channels=3))
        assert bottom_up.channels_last is flag
        sr = bottom_up.model.stages[0].blocks[0].attn.sr.weight
        assert sr.is_contiguous(memory_format=torch.channels_last) is flag


def _sr_weight(backbone):
    return backbone.model.stages[0].blocks[0].attn.sr.weight


def test_channels_last_is_the_default_on_the_cpu_only():
    auto = PVTv2Backbone("pvt_v2_b0", drop_path_rate=0.0).eval()
    nchw = PVTv2Backbone("pvt_v2_b0", drop_path_rate=0.0, channels_last=False).eval()
    nchw.load_state_dict(auto.state_dict())
    assert auto.channels_last and not nchw.channels_last
    assert _sr_weight(auto).is_contiguous(memory_format=torch.channels_last)
    assert not _sr_weight(auto).is_contiguous()
    assert _sr_weight(nchw).is_contiguous()
    x = torch.rand(1, 3, 96, 128)
    with torch.no_grad():
        a, b = auto(x), nchw(x)
    for k in a:  # the same function, up to float rounding
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-4)
        # channels-last maps for the FPN after a channels-last backbone, NCHW otherwise
        assert a[k].is_contiguous(memory_format=torch.channels_last) and a[k].shape[1] > 1
        assert not a[k].is_contiguous() and b[k].is_contiguous()
    # with gradients (training), timm's NCHW maps: the training steps stay as they were
    assert all(f.is_contiguous() for f in auto(x).values())
    # moving off the CPU re-decides the automatic layout; a fixed setting stays
    auto.to("meta")
    assert not auto.channels_last and _sr_weight(auto).is_contiguous()
    fixed = PVTv2Backbone("pvt_v2_b0", channels_last=True).to("meta")
    assert fixed.channels_last
    assert _sr_weight(fixed).is_contiguous(memory_format=torch.channels_last)


def _count_fused_calls(monkeypatch):
    """The post-ops of the fused oneDNN convolution kernel calls, as they run."""
    from pvt_fpn_d2.modeling import fused

    kernel = fused._KERNEL
    if kernel is None:
        pytest.skip("this PyTorch build has no oneDNN convolution with a GELU post-op")
    calls = []

    def counting(*args):
        calls.append(args[7])
        return kernel(*args)

    monkeypatch.setattr(fused, "_KERNEL", counting)
    return calls


@pytest.mark.parametrize("name", ["pvt_v2_b0", "pvt_v2_b2_li"])
def test_fused_gelu_default_stays_within_float_noise_of_timm(name, monkeypatch):
    """The CPU inference default (each MLP's depthwise convolution and GELU as one oneDNN
    kernel) against timm's own model with the same weights, on three sizes (one not a multiple
    of 32): within 1e-5 (measured: equal), and the fused kernel really ran, once per block."""
    torch.manual_seed(0)
    backbone = PVTv2Backbone(name, drop_path_rate=0.0).eval()
    ref = _timm_reference(backbone)
    blocks = sum(len(s.blocks) for s in ref.stages)
    assert backbone.fused_mlps == blocks
    calls = _count_fused_calls(monkeypatch)
    for h, w in [(96, 128), (200, 249), (160, 96)]:
        x = torch.randn(1, 3, h, w)
        calls.clear()
        with torch.no_grad():
            ours = backbone(x)
            theirs = ref.forward_intermediates(x, intermediates_only=True)
        assert calls == ["gelu"] * blocks
        for a, b in zip(ours.values(), theirs, strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def test_fused_gelu_is_not_used_for_training_autocast_or_tracing(monkeypatch):
    """No backward pass in the fused kernel: with gradients on (training), under autocast and
    while tracing, the MLPs run timm's convolution and GELU, and every weight gets a gradient."""
    backbone = PVTv2Backbone("pvt_v2_b0", drop_path_rate=0.0)
    plain = PVTv2Backbone("pvt_v2_b0", drop_path_rate=0.0, fuse_gelu=False)
    plain.load_state_dict(backbone.state_dict())
    assert plain.fused_mlps == 0 and backbone.fused_mlps == 8
    calls = _count_fused_calls(monkeypatch)
    x = torch.randn(1, 3, 64, 96)
    out = backbone(x)
    _loss(out).backward()
    assert all(p.grad is not None for p in backbone.parameters())
    for a, b in zip(out.values(), plain(x).values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        backbone.eval()(x)
    torch.jit.trace(backbone.eval(), x, strict=False, check_trace=False)
    assert calls == []
