"""TriNet shapes, per-frame logits averaging, VKD checkpoint key layout, frozen-teacher BN, student init."""
import torch
from torch import nn

from shared.backbones import load_weights
from tcl_i2v.model import ResNetTrunk, TriNet, reinit_student, vkd_key_map
from tcl_i2v.train import freeze_teacher


def test_tiny_trinet_shapes_and_logits_averaged_after_classifier():
    net = TriNet(7, "tiny", tiny_widths=(8, 8, 8, 16)).eval()
    clip = torch.randn(3, 4, 3, 32, 16)
    out = net(clip)
    assert out["emb"].shape == (3, 16) and out["frame_emb"].shape == (3, 4, 16) and out["logits"].shape == (3, 7)
    per_frame = net.classifier(out["frame_emb"].flatten(0, 1)).view(3, 4, 7).mean(1)
    assert torch.allclose(out["logits"], per_frame, atol=1e-6)
    assert torch.allclose(out["emb"], out["frame_emb"].mean(1))
    img = torch.randn(2, 3, 32, 16)  # an image is a 1-frame clip
    assert torch.allclose(net(img)["emb"], net(img[:, None])["emb"])
    assert net.classifier.bottleneck.bias.requires_grad is False


def test_resnet_trunk_last_stride_1_and_no_relu_in_last_block():
    trunk = ResNetTrunk(18).eval()
    y = trunk(torch.randn(1, 3, 64, 32))
    assert y.shape == (1, 512, 4, 2)  # /16, not /32
    assert isinstance(trunk.layer4[-1].relu, nn.Identity)
    trunk.layer4[-1].bn2.weight.data.fill_(1.0)
    assert (trunk(torch.randn(2, 3, 64, 32)) < 0).any()  # features can be negative (VKD)


def _to_vkd_layout(sd):
    """Our state dict -> VKD's ``TriNet.state_dict()`` key layout (the inverse of vkd_key_map)."""
    out = {}
    for k, v in sd.items():
        if k.startswith("backbone.conv1."):
            out["backbone.features_layers.0.0." + k[len("backbone.conv1."):]] = v
        elif k.startswith("backbone.bn1."):
            out["backbone.features_layers.0.1." + k[len("backbone.bn1."):]] = v
        elif k.startswith("backbone.layer"):
            n, rest = k[len("backbone.layer"):].split(".", 1)
            out[f"backbone.features_layers.{n}.0.{rest}"] = v
        else:
            out[k] = v
    return out


def test_vkd_checkpoint_layout_loads(tmp_path):
    src = TriNet(11, "resnet18")
    for p in src.parameters():
        p.data.normal_()
    path = tmp_path / "chk_end"
    torch.save(_to_vkd_layout(src.state_dict()), path)
    dst = TriNet(11, "resnet18")
    load_weights(dst, path, key_map=vkd_key_map, strict=True)
    for k, v in src.state_dict().items():
        assert torch.equal(dst.state_dict()[k], v), k
    assert vkd_key_map("backbone.features_layers.2.0.1.conv1.weight") == "backbone.layer2.1.conv1.weight"
    assert vkd_key_map("module.classifier.classifier.weight") == "classifier.classifier.weight"


def test_frozen_teacher_uses_batch_stats_and_keeps_running_stats():
    net = TriNet(5, "tiny", tiny_widths=(8, 8, 8, 8))
    freeze_teacher(net)
    before = {k: v.clone() for k, v in net.state_dict().items() if "running" in k}
    net.train()
    net(torch.randn(4, 2, 3, 32, 16) * 3 + 1)
    for k, v in before.items():
        assert torch.equal(net.state_dict()[k], v), k
    assert not any(p.requires_grad for p in net.parameters())


def test_vkd_student_init_copies_all_but_the_last_block_and_classifier():
    teacher = TriNet(5, "tiny", tiny_widths=(8, 8, 8, 8))
    for p in teacher.parameters():
        p.data.normal_()
    student = reinit_student(TriNet(5, "tiny", tiny_widths=(8, 8, 8, 8)), teacher)
    ts, ss = teacher.state_dict(), student.state_dict()
    assert torch.equal(ts["backbone.body.0.weight"], ss["backbone.body.0.weight"])
    assert not torch.equal(ts["backbone.body.9.weight"], ss["backbone.body.9.weight"])
    assert not torch.equal(ts["classifier.classifier.weight"], ss["classifier.classifier.weight"])


def test_teacher_and_evaluate_checkpoints_fail_in_one_line_naming_the_file(tmp_path, capsys):
    import pytest

    from shared.errors import CheckpointError, format_error
    from tcl_i2v import evaluate
    from tcl_i2v.train import load_teacher_state

    teacher = TriNet(5, "tiny", tiny_widths=(8, 8, 8, 8))
    with pytest.raises(FileNotFoundError, match="missing.pt: teacher checkpoint"):
        load_teacher_state(teacher, str(tmp_path / "missing.pt"))
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="bad.pt: not a loadable checkpoint") as e:
        load_teacher_state(teacher, str(bad))
    line = format_error("python -m tcl_i2v.train", e.value)
    assert "bad.pt" in line and "unexpected" not in line and "\n" not in line
    src = TriNet(5, "tiny", tiny_widths=(8, 8, 8, 8))  # an engine checkpoint of a TeacherStudent loads
    torch.save({"model": {f"teacher.{k}": v for k, v in src.state_dict().items()}}, tmp_path / "last.pt")
    load_teacher_state(teacher, str(tmp_path / "last.pt"))
    assert all(torch.equal(teacher.state_dict()[k], v) for k, v in src.state_dict().items())
    cfg = "tcl_i2v/configs/tcl-ml_tiny_1xb32-30e_synvideo.yaml"
    for path, text in ((tmp_path / "missing.pt", "missing.pt: checkpoint not found"),
                       (bad, "bad.pt: not a loadable checkpoint")):
        with pytest.raises(SystemExit) as e:
            evaluate.main(["--config", cfg, "--checkpoint", str(path), "data.train_ids=4", "data.test_ids=4"])
        err = capsys.readouterr().err.strip()
        assert e.value.code == 1 and text in err and "unexpected" not in err and len(err.splitlines()) == 1
