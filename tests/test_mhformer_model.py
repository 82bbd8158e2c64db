"""MHFormer model: shapes, the frame constraint, parameter count, CHI order, SDPA, official checkpoints."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from mhformer.model import (
    CHIBlock,
    MHFormer,
    PerFrameMLP,
    SingleHypothesis,
    count_parameters,
    load_official_checkpoint,
)
from shared.errors import CheckpointError


def spec_param_count(n: int) -> int:
    """Hand-derived from the official modules (C = 512, d_hid = 1024, 17 joints):

    MHG 3 x (encoder 32N^2 + 80N) + 3 outer LNs 6N; embeddings 3 x (34*512 + 512) (+ 3 BN x 1024 when
    N <= 27); hypothesis transformer 3 pos-embeds 1536N + 2 SHR 12,612,608 + CHI 6,312,448 + LN 3,072;
    head BN 3,072 + conv 78,387.
    """
    mhg = 3 * (32 * n * n + 80 * n) + 6 * n
    emb = 3 * (34 * 512 + 512) + (3 * 2 * 512 if n <= 27 else 0)
    hyp = 1536 * n + 2 * 6_306_304 + 6_312_448 + 3072
    head = 3072 + 1536 * 51 + 51
    return mhg + emb + hyp + head


@pytest.mark.parametrize("n", [9, 27, 81, 243, 351])
def test_parameter_count_matches_spec_formula(n):
    assert count_parameters(MHFormer(frames=n)) == spec_param_count(n)


def test_parameter_count_at_27_frames_is_19_18m():
    assert round(count_parameters(MHFormer(frames=27)) / 1e6, 2) == 19.18


@pytest.mark.parametrize("n", [9, 27, 81, 243, 351])
def test_shapes_every_valid_n(n):
    torch.manual_seed(0)
    model = MHFormer(frames=n, channel=32, d_hid=64).eval()
    x = torch.randn(2, n, 17, 2)
    out = model(x)
    assert out.shape == (2, n, 17, 3)
    h = model.hypotheses(x)
    assert len(h) == 3 and all(t.shape == (2, 34, n) for t in h)
    # N <= 27 adds BN + ReLU + Dropout after the embedding conv (different checkpoint keys).
    keys = model.state_dict().keys()
    assert ("embedding_1.1.running_mean" in keys) == (n <= 27)
    assert ("embedding_1.weight" in keys) == (n > 27)


@pytest.mark.parametrize("n", [0, 1, 10, 26, 28, 100])
def test_invalid_frames_are_refused(n):
    with pytest.raises(ValueError, match=f"model.frames={n}: MHFormer needs a multiple of 9"):
        MHFormer(frames=n, channel=32, d_hid=64)


def test_wrong_input_shape_is_refused():
    with pytest.raises(ValueError, match=r"expects \(B, 27, 17, 2\)"):
        MHFormer(frames=27, channel=32, d_hid=64)(torch.randn(1, 9, 17, 2))


def test_baselines_shapes_and_gradients():
    x = torch.randn(4, 27, 17, 2)
    for model in (SingleHypothesis(frames=27, channel=48, d_hid=96), PerFrameMLP(hidden=64),
                  MHFormer(frames=27, channel=32, d_hid=64)):
        out = model(x)
        assert out.shape == (4, 27, 17, 3)
        out.square().mean().backward()
        grads = [p.grad for p in model.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads), type(model).__name__


def test_per_frame_mlp_has_no_temporal_context():
    model = PerFrameMLP(hidden=64).eval()
    x = torch.randn(2, 5, 17, 2)
    y = x.clone()
    y[:, 0] += 1.0  # change frame 0 only
    torch.testing.assert_close(model(x)[:, 1:], model(y)[:, 1:])


def test_sdpa_matches_explicit_attention():
    torch.manual_seed(0)
    fused = MHFormer(frames=27, channel=64, d_hid=128, fused_attention=True).eval()
    plain = MHFormer(frames=27, channel=64, d_hid=128, fused_attention=False).eval()
    plain.load_state_dict(fused.state_dict())
    x = torch.randn(3, 27, 17, 2)
    torch.testing.assert_close(fused(x), plain(x), atol=1e-5, rtol=1e-4)


class _Recorder(nn.Module):
    """Stands in for a cross-attention: records (Q, K, V) inputs and returns a fixed offset."""

    def __init__(self, offset: float):
        super().__init__()
        self.offset, self.calls = offset, []

    def forward(self, q, k, v):
        self.calls.append((q.clone(), k.clone(), v.clone()))
        return torch.full_like(q, self.offset)


def test_chi_updates_are_sequential_as_the_official_code():
    """Z1 += MCA(Z2, Z3, Z1); Z2 += MCA(Z1', Z3, Z2); Z3 += MCA(Z1', Z2', Z3) with the updated Z1', Z2'."""
    blk = CHIBlock(dim=4, heads=2, hidden=8, drop=0.0, drop_path=0.0, fused=True)
    for i in (1, 2, 3):
        for j in (1, 2, 3):
            setattr(blk, f"norm3_{i}{j}", nn.Identity())
    rec = [_Recorder(10.0), _Recorder(100.0), _Recorder(1000.0)]
    blk.attn_1, blk.attn_2, blk.attn_3 = rec
    blk.norm2 = nn.Identity()
    blk.mlp = _Zero()
    z1, z2, z3 = torch.full((1, 2, 4), 1.0), torch.full((1, 2, 4), 2.0), torch.full((1, 2, 4), 3.0)
    o1, o2, o3 = blk(z1, z2, z3)
    q, k, v = rec[0].calls[0]
    assert (q == 2).all() and (k == 3).all() and (v == 1).all()
    q, k, v = rec[1].calls[0]
    assert (q == 11).all() and (k == 3).all() and (v == 2).all()  # Q is the updated Z1
    q, k, v = rec[2].calls[0]
    assert (q == 11).all() and (k == 102).all() and (v == 3).all()  # K is the updated Z2
    assert (o1 == 11).all() and (o2 == 102).all() and (o3 == 1003).all()


class _Zero(nn.Module):
    def forward(self, x):
        return torch.zeros_like(x)


# ----------------------------------------------------------------------------- official checkpoints
OFFICIAL_KEYS_27 = {  # key -> shape, as in the released checkpoint/pretrained/27/model_4590.pth
    "norm_1.weight": (27,),
    "Transformer_encoder_1.pos_embed": (1, 34, 27),
    "Transformer_encoder_2.blocks.3.attn.qkv.weight": (81, 27),
    "Transformer_encoder_3.blocks.0.mlp.fc1.weight": (54, 27),
    "Transformer_encoder_3.norm.bias": (27,),
    "embedding_1.0.weight": (512, 34, 1),
    "embedding_3.1.running_var": (512,),
    "Transformer_hypothesis.pos_embed_2": (1, 27, 512),
    "Transformer_hypothesis.SHR_blocks.1.norm1_3.weight": (512,),
    "Transformer_hypothesis.SHR_blocks.0.attn_2.qkv.weight": (1536, 512),
    "Transformer_hypothesis.SHR_blocks.1.mlp.fc1.weight": (1024, 1536),
    "Transformer_hypothesis.CHI_blocks.0.norm3_32.bias": (512,),
    "Transformer_hypothesis.CHI_blocks.0.attn_3.linear_k.weight": (512, 512),
    "Transformer_hypothesis.CHI_blocks.0.mlp.fc2.weight": (1536, 1024),
    "Transformer_hypothesis.norm.weight": (1536,),
    "regression.0.running_mean": (1536,),
    "regression.1.weight": (51, 1536, 1),
}


@pytest.fixture(scope="module")
def released_27(tmp_path_factory):
    """A checkpoint file in the official format: ``torch.save(model.state_dict())``, random weights."""
    torch.manual_seed(1)
    src = MHFormer(frames=27).eval()
    for name, buf in src.named_buffers():  # non-trivial BN statistics
        if name.endswith("running_mean") or name.endswith("running_var"):
            buf.uniform_(0.5, 1.5)
    path = tmp_path_factory.mktemp("ckpt") / "model_4590.pth"
    torch.save(src.state_dict(), path)
    return path, src


def test_official_key_layout():
    sd = MHFormer(frames=27).state_dict()
    for k, shape in OFFICIAL_KEYS_27.items():
        assert tuple(sd[k].shape) == shape, k
    assert "embedding_1.weight" in MHFormer(frames=81, channel=32, d_hid=64).state_dict()


def test_released_checkpoint_loads_strictly(released_27):
    path, src = released_27
    model = MHFormer(frames=27).eval()
    load_official_checkpoint(model, path)
    x = torch.randn(2, 27, 17, 2)
    torch.testing.assert_close(model(x), src(x))
    # DataParallel-saved files ("module." prefix) load too.
    sd = {f"module.{k}": v for k, v in torch.load(path, weights_only=True).items()}
    load_official_checkpoint(MHFormer(frames=27), sd)


def test_pre_may_2022_layout_is_refused_not_silently_skipped(released_27):
    path, _ = released_27
    sd = torch.load(path, weights_only=True)
    old = {}
    for k, v in sd.items():
        k = k.replace("Transformer_encoder_", "trans_auto_").replace("Transformer_hypothesis.", "Transformer.")
        k = k.replace("regression.", "fcn.").replace("embedding_", "encoder_")
        k = k.replace(".pos_embed", ".Temporal_pos_embed")
        old[k] = v
    with pytest.raises(ValueError, match="pre-May-2022 MHFormer key layout"):
        load_official_checkpoint(MHFormer(frames=27), old)


def test_wrong_frames_and_missing_keys_are_named(released_27, tmp_path):
    path, _ = released_27
    with pytest.raises(ValueError, match="trained with N=27 frames, the model has N=81"):
        load_official_checkpoint(MHFormer(frames=81, channel=32, d_hid=64), path)
    sd = torch.load(path, weights_only=True)
    del sd["regression.1.bias"]
    with pytest.raises(ValueError, match=r"1 missing \(e.g. \['regression.1.bias'\]\)"):
        load_official_checkpoint(MHFormer(frames=27), sd)
    bad = tmp_path / "broken.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="broken.pth: not a loadable checkpoint"):
        load_official_checkpoint(MHFormer(frames=27, channel=32, d_hid=64), bad)


def test_diagnose_forward_with_hypotheses_and_steps():
    """The collapse probe: the identity pick is the model's own forward, a collapsed pick is not; the MHG step
    ratio on hand-made hypotheses."""
    from mhformer.diagnose import forward_with_hypotheses, hypothesis_steps

    torch.manual_seed(0)
    m = MHFormer(frames=9, channel=16, d_hid=32).eval()
    x = torch.randn(3, 9, 17, 2)
    with torch.no_grad():
        assert torch.equal(forward_with_hypotheses(m, x, (0, 1, 2)), m(x))
        assert not torch.allclose(forward_with_hypotheses(m, x, (0, 0, 0)), m(x), atol=1e-4)
    ones = torch.ones(2, 34, 9)
    m.hypotheses = lambda _x: (ones, 3 * ones, 3 * ones)  # ||X2 - X1|| / ||X1|| = 2, X3 = X2
    assert hypothesis_steps(m, x) == (2.0, 0.0)
