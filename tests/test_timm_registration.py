"""timm-native models: ``import <paper>`` registers every name the paper defines, each with a
``pretrained_cfg`` (no url: nothing downloads), and the backbones build with ``features_only=True``."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import timm
import torch
from timm.models._registry import _model_entrypoints

import elsa  # noqa: F401
import knn_attention
import scaled_relu_stem  # noqa: F401
from shared import PAPERS

PROBE = """
import json, sys, timm
from timm.models._registry import _model_entrypoints
out = {}
for paper in sys.argv[1:]:
    before = set(_model_entrypoints)
    __import__(paper)  # the package only, never <paper>.model
    out[paper] = sorted(set(_model_entrypoints) - before)
print(json.dumps(out))
"""


def _ours() -> dict[str, str]:
    """Every registered timm name whose entry point lives in one of the paper folders -> its paper."""
    return {name: fn.__module__.split(".")[0] for name, fn in _model_entrypoints.items()
            if fn.__module__.split(".")[0] in PAPERS}


def test_importing_the_package_registers_every_name_it_defines():
    r = subprocess.run([sys.executable, "-c", PROBE, *PAPERS], capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-2000:]
    on_import = json.loads(r.stdout)
    by_paper: dict[str, list[str]] = {}
    for name, paper in _ours().items():  # this process imported the model modules themselves too
        by_paper.setdefault(paper, []).append(name)
    assert by_paper, "no paper registers a timm model"
    for paper, names in by_paper.items():
        assert sorted(names) == on_import[paper], paper
    for family in ("elsa_swin_tiny", "knn_deit_small_patch16_224", "knn_twins_svt_small",
                   "deit_small_srstem_patch16_224"):
        assert family in _ours()


def test_every_registered_model_has_a_pretrained_cfg_without_a_download():
    for name in _ours():
        cfg = timm.models.get_pretrained_cfg(name)
        assert cfg is not None, name
        assert cfg.input_size[0] == 3 and len(cfg.mean) == 3 and cfg.interpolation, name
        assert not cfg.url and not cfg.hf_hub_id, name  # no weights were released; none are fetched
        with pytest.raises(ValueError, match="pretrained=False"):
            timm.create_model(name, pretrained=True)


@pytest.mark.parametrize("name, kw, out_indices, channels, reduction", [
    ("knn_deit_tiny_patch16_224", dict(img_size=64, topk=0.5), (5, 11), [192, 192], [16, 16]),
    ("knn_pvt_v2_b0", dict(topk=0.5), (1, 3), [64, 256], [8, 32]),
    ("deit_tiny_srstem_patch16_224", dict(img_size=64), (11,), [192], [16]),
])
def test_backbones_build_features_only(name, kw, out_indices, channels, reduction):
    model = timm.create_model(name, features_only=True, out_indices=out_indices, **kw)
    assert model.pretrained_cfg["architecture"] == name
    assert model.feature_info.channels() == channels and model.feature_info.reduction() == reduction
    size = kw.get("img_size", 224)
    feats = model(torch.randn(2, 3, size, size))
    assert [tuple(f.shape) for f in feats] == [(2, c, size // r, size // r) for c, r in zip(channels, reduction)]
    if name.startswith("knn_"):  # the feature model still runs k-NN attention, with the k asked for
        mods = knn_attention.knn_modules(model)
        assert mods and all(m.topk == 0.5 for m in mods)


def test_knn_swin_features_only_keeps_timm_swin_layout():
    # timm's Swin feature maps are NHWC (its feature_info says so); the k-NN one is the same wrapper
    model = timm.create_model("knn_swin_tiny_patch4_window7_224", features_only=True, out_indices=(1, 2))
    assert model.pretrained_cfg["architecture"] == "knn_swin_tiny_patch4_window7_224"
    assert model.feature_info.channels() == [192, 384] and model.feature_info.reduction() == [8, 16]
    with torch.no_grad():
        feats = model(torch.randn(1, 3, 224, 224))
    assert [tuple(f.shape) for f in feats] == [(1, 28, 28, 192), (1, 14, 14, 384)]
    assert len(knn_attention.knn_modules(model)) == 2 + 2 + 6  # every window attention of stages 0-2


def test_features_only_is_the_classifier_backbone_run_to_that_block():
    # same weights: the stem ViT's block-11 map from features_only equals the full model's intermediate
    torch.manual_seed(0)
    full = timm.create_model("deit_tiny_srstem_patch16_224", img_size=64, num_classes=0).eval()
    feat = timm.create_model("deit_tiny_srstem_patch16_224", img_size=64, features_only=True, out_indices=(11,))
    missing, unexpected = feat.model.load_state_dict(full.state_dict(), strict=False)
    assert not missing
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        want = full.forward_intermediates(x, indices=[11], intermediates_only=True)[0]
        got = feat.eval()(x)[0]
    torch.testing.assert_close(got, want)
