# The PVT-v2 bottom-up network of every model here, declared once (official PVT-v2 setup: all
# stages trained, drop path 0.1). Model files copy it (`bottom_up()`) and change what differs.
import copy

from detectron2.config import LazyCall as L

from pvt_fpn_d2 import PVTv2Backbone

_BOTTOM_UP = L(PVTv2Backbone)(
    name="pvt_v2_b2",
    out_features=["res2", "res3", "res4", "res5"],
    drop_path_rate=0.1,
    freeze_at=0,
    use_act_checkpoint=False,
)


def bottom_up(**changes):
    """A fresh copy of the PVT-v2 bottom-up LazyCall with ``changes`` applied."""
    node = copy.deepcopy(_BOTTOM_UP)
    node.update(changes)
    return node
