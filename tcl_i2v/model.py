"""Networks: VKD ``TriNet`` (ResNet-50, last stride 1, per-frame GAP, mean over frames, BNNeck) and a tiny CNN.

Shapes: a clip is ``(B, T, 3, H, W)``; an image is a 1-frame clip (VKD issue #8). ``forward`` returns
``emb (B, D)`` (pre-BN mean of the frame features, used for the losses and retrieval), ``frame_emb
(B, T, D)`` and ``logits (B, C)`` = mean over frames of the per-frame logits (VKD ``ClassificationLayer``:
classification happens per frame, *then* the logits are averaged).

Teacher (video, T = 8 frames) and student (image, 1 frame) are two instances of :class:`TriNet`.
:func:`vkd_key_map` reads VKD's released ``TriNet.state_dict()`` (``chk_end`` / ``chk_di_1``).
"""
from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

from shared.backbones import create_resnet, load_weights


class ResNetTrunk(nn.Module):
    """torchvision ResNet conv trunk; ``last_stride=1`` (layer4 stride 1) and the final ReLU of layer4
    removed (VKD ``model/net.py``: the last bottleneck's ReLU is dropped so features can be negative)."""

    def __init__(self, depth: int = 50, weights: str | None = None, last_stride: int = 1, final_relu: bool = False):
        super().__init__()
        r = create_resnet(depth, weights or None)
        if last_stride == 1:
            blk = r.layer4[0]
            (blk.conv2 if hasattr(blk, "conv3") else blk.conv1).stride = (1, 1)  # bottleneck / basic block
            blk.downsample[0].stride = (1, 1)
        self.conv1, self.bn1, self.relu, self.maxpool = r.conv1, r.bn1, r.relu, r.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = r.layer1, r.layer2, r.layer3, r.layer4
        self.final_relu, self.depth = final_relu, depth
        self.out_dim = r.fc.in_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer3(self.layer2(self.layer1(x)))
        last = self.layer4[-1]
        x = self.layer4[:-1](x)
        if self.final_relu:
            return last(x)
        # the last bottleneck without its closing ReLU (VKD)
        idt = last.downsample(x) if last.downsample is not None else x
        y = last.relu(last.bn1(last.conv1(x)))
        if hasattr(last, "conv3"):
            y = last.relu(last.bn2(last.conv2(y)))
            y = last.bn3(last.conv3(y))
        else:
            y = last.bn2(last.conv2(y))
        return y + idt


class TinyTrunk(nn.Module):
    """Spec 8 miniature: conv-BN-ReLU blocks, stride 2 except the last (last stride 1), no final ReLU."""

    def __init__(self, widths: tuple[int, ...] = (32, 64, 96, 128)):
        super().__init__()
        layers, c = [], 3
        for i, w in enumerate(widths):
            last = i == len(widths) - 1
            layers += [nn.Conv2d(c, w, 3, 1 if last else 2, 1, bias=False), nn.BatchNorm2d(w)]
            if not last:
                layers.append(nn.ReLU(inplace=True))
            c = w
        self.body = nn.Sequential(*layers)
        self.out_dim = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class BNNeckClassifier(nn.Module):
    """VKD ``ClassificationLayer``: BN1d (bias frozen at 0) + Linear(no bias, N(0, 1e-3))."""

    def __init__(self, dim: int, num_classes: int):
        super().__init__()
        self.bottleneck = nn.BatchNorm1d(dim)
        self.bottleneck.bias.requires_grad_(False)
        nn.init.zeros_(self.bottleneck.bias)
        self.classifier = nn.Linear(dim, num_classes, bias=False)
        nn.init.normal_(self.classifier.weight, std=1e-3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.bottleneck(x))


class TriNet(nn.Module):
    """Per-frame trunk + GAP, mean aggregation over frames, per-frame BNNeck logits averaged."""

    def __init__(self, num_classes: int, backbone: str = "resnet50", weights: str | None = None,
                 tiny_widths: tuple[int, ...] = (32, 64, 96, 128)):
        super().__init__()
        if backbone == "tiny":
            self.backbone = TinyTrunk(tuple(tiny_widths))
        elif backbone.startswith("resnet"):
            self.backbone = ResNetTrunk(int(backbone[6:]), weights)
        else:
            raise ValueError(f"backbone must be 'tiny' or 'resnetNN', got {backbone!r}")
        self.classifier = BNNeckClassifier(self.backbone.out_dim, num_classes)

    def forward(self, clip: torch.Tensor) -> dict[str, torch.Tensor]:
        if clip.dim() == 4:
            clip = clip[:, None]
        b, t = clip.shape[:2]
        f = self.backbone(clip.flatten(0, 1)).mean((2, 3))  # (B*T, D) per-frame GAP
        logits = self.classifier(f).view(b, t, -1).mean(1)
        frame_emb = f.view(b, t, -1)
        return {"emb": frame_emb.mean(1), "frame_emb": frame_emb, "logits": logits}


def reinit_student(student: TriNet, teacher: TriNet, weights: str | None = None) -> TriNet:
    """VKD student init: a copy of the teacher with layer4 re-initialised (ImageNet weights again when
    ``weights`` is given, else fresh init) and a fresh classifier."""
    student.load_state_dict(teacher.state_dict())
    bb = student.backbone
    if isinstance(bb, ResNetTrunk):
        fresh = ResNetTrunk(bb.depth, weights)
        bb.layer4.load_state_dict(fresh.layer4.state_dict())
    else:
        last = [m for m in bb.body if isinstance(m, (nn.Conv2d, nn.BatchNorm2d))][-2:]
        for m in last:
            m.reset_parameters()
    student.classifier = BNNeckClassifier(bb.out_dim, student.classifier.classifier.out_features)
    return student


_VKD_LAYERS = {"0": None, "1": "layer1", "2": "layer2", "3": "layer3", "4": "layer4"}


def vkd_key_map(key: str) -> str | None:
    """VKD ``TriNet.state_dict()`` key -> ours.

    VKD: ``backbone.features_layers.0.{0,1}.*`` (conv1, bn1 in a Sequential), ``backbone.features_layers.
    {1..4}.*`` (layer1-4), ``classifier.bottleneck.*``, ``classifier.classifier.weight``. Anything else
    (``num_batches_tracked`` included) maps to itself.
    """
    m = re.match(r"(?:module\.)?backbone\.features_layers\.(\d)\.(.*)", key)
    if not m:
        return key.removeprefix("module.")
    idx, rest = m.groups()
    if idx == "0":
        sub, _, tail = rest.partition(".")
        name = {"0": "conv1", "1": "bn1"}.get(sub)
        return f"backbone.{name}.{tail}" if name else None
    return f"backbone.{_VKD_LAYERS[idx]}.{rest}"


def load_vkd_checkpoint(model: TriNet, path: str | Path, strict: bool = True):
    """Load a VKD ``chk_end`` / ``chk_di_1`` file into ``model`` through :func:`vkd_key_map`."""
    report = load_weights(model, path, key_map=vkd_key_map, strict=strict)
    report.raise_or_print(strict=strict)
    return report
