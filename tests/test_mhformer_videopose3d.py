"""The VideoPose3D baseline (Pavllo et al. 2019, facebookresearch/VideoPose3D common/model.py TemporalModel):
module layout, parameter count by hand, receptive field, dilations, an independent restatement."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mhformer.model import VideoPose3D, build_model, count_parameters, filter_widths_for


def test_filter_widths_as_in_videopose3d():
    assert filter_widths_for(27) == (3, 3, 3)
    assert filter_widths_for(81) == (3, 3, 3, 3)
    assert filter_widths_for(243) == (3, 3, 3, 3, 3)
    for n in (1, 9 * 2, 28, 45):
        with pytest.raises(ValueError, match="power of 3"):
            filter_widths_for(n)
    with pytest.raises(ValueError, match="odd"):
        VideoPose3D(filter_widths=(3, 2))


def test_official_key_layout_and_parameter_count():
    c = 24
    m = VideoPose3D(filter_widths=(3, 3, 3), channels=c)
    keys = set(m.state_dict())
    expect = {"expand_conv.weight", "shrink.weight", "shrink.bias"}
    for name in ["expand_bn"] + [f"layers_bn.{i}" for i in range(4)]:
        expect |= {f"{name}.{k}" for k in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")}
    expect |= {f"layers_conv.{i}.weight" for i in range(4)}
    assert keys == expect
    assert m.layers_conv[0].dilation == (3,) and m.layers_conv[2].dilation == (9,)
    assert m.layers_conv[1].kernel_size == (1,) and m.expand_conv.bias is None
    # expand 34*C*3, two blocks of (C*C*3 + C*C), shrink C*51 + 51, five BNs of 2C
    assert count_parameters(m) == 34 * c * 3 + 2 * (3 * c * c + c * c) + c * 51 + 51 + 5 * 2 * c
    assert m.receptive_field() == 27 and m.pad == [1, 3, 9]


def test_output_is_the_centre_frame_and_sees_all_27_frames():
    m = VideoPose3D(channels=16).eval()
    x = torch.randn(2, 27, 17, 2, requires_grad=True)
    out = m(x)
    assert out.shape == (2, 1, 17, 3)
    out.sum().backward()
    seen = x.grad.abs().sum(dim=(0, 2, 3))
    assert (seen > 0).all()  # dilations 1, 3, 9 tile the 27 frames without a gap
    assert m(torch.randn(2, 29, 17, 2)).shape == (2, 3, 17, 3)  # longer input: one output per extra frame
    with pytest.raises(ValueError, match="receptive field 27"):
        m(torch.randn(1, 26, 17, 2))


def test_matches_an_independent_restatement():
    torch.manual_seed(0)
    m = VideoPose3D(channels=8).eval()
    for bn in [m.expand_bn, *m.layers_bn]:  # non-trivial BN statistics
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.data.uniform_(0.5, 1.5)
    x = torch.randn(3, 27, 17, 2)

    def bn(mod, h):
        return (h - mod.running_mean[:, None]) / (mod.running_var[:, None] + mod.eps).sqrt() * mod.weight[:, None] \
            + mod.bias[:, None]

    h = x.reshape(3, 27, 34).transpose(1, 2)
    h = F.relu(bn(m.expand_bn, F.conv1d(h, m.expand_conv.weight)))  # 27 -> 25 frames
    for i, dil in enumerate((3, 9)):
        res = h[:, :, dil:-dil]
        h = F.relu(bn(m.layers_bn[2 * i], F.conv1d(h, m.layers_conv[2 * i].weight, dilation=dil)))
        h = res + F.relu(bn(m.layers_bn[2 * i + 1], F.conv1d(h, m.layers_conv[2 * i + 1].weight)))
    ref = F.conv1d(h, m.shrink.weight, m.shrink.bias).transpose(1, 2).reshape(3, 1, 17, 3)
    torch.testing.assert_close(m(x), ref, atol=1e-5, rtol=1e-5)


def test_build_model_and_training_step_supervise_the_centre_frame():
    from mhformer.train import MHFormerConfig, MHFormerTask

    m = build_model("videopose3d", frames=27, channel=16)
    assert isinstance(m, VideoPose3D) and m.receptive_field() == 27
    cfg = MHFormerConfig()
    cfg.model.arch, cfg.model.frames, cfg.model.channel = "videopose3d", 27, 16
    task = MHFormerTask(cfg)
    model = task.build_model().eval()
    x, y = torch.randn(2, 27, 17, 2), torch.randn(2, 27, 17, 3)
    loss = task.training_step(model, (x, y, None), None)["loss"]
    target = y[:, 13:14].clone()
    target[:, :, 0] = 0
    expect = (model(x) - target).norm(dim=-1).mean()
    torch.testing.assert_close(loss, expect)
