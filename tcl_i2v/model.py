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

from shared.backbones import create_resnet, load_local_file, load_weights


class ResNetTrunk(nn.Module):
    """torchvision ResNet conv trunk as VKD ``Backbone``: layer4 stride 1 (``last_stride=1``) and
    ``layer4[-1].relu`` replaced by an identity. torchvision's block calls that one module three times, so
    the last bottleneck has *no* ReLU at all (VKD ``model/net.py``), not only the closing one.
    ``zero_init_residual`` as VKD (matters only without ImageNet weights)."""

    def __init__(self, depth: int = 50, weights: str | None = None, last_stride: int = 1):
        super().__init__()
        r = create_resnet(depth, weights or None)
        if not weights:
            for m in r.modules():
                if hasattr(m, "conv3"):
                    nn.init.zeros_(m.bn3.weight)
                elif hasattr(m, "conv2") and hasattr(m, "bn2"):
                    nn.init.zeros_(m.bn2.weight)
        blk = r.layer4[0]
        (blk.conv2 if hasattr(blk, "conv3") else blk.conv1).stride = (last_stride, last_stride)
        blk.downsample[0].stride = (last_stride, last_stride)
        r.layer4[-1].relu = nn.Identity()
        self.conv1, self.bn1, self.relu, self.maxpool = r.conv1, r.bn1, r.relu, r.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = r.layer1, r.layer2, r.layer3, r.layer4
        self.depth, self.out_dim = depth, r.fc.in_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


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
    """VKD student init (``TriNet.reinit_layers(reinitl4=True)``): a copy of the teacher with layer4
    re-initialised (ImageNet weights again when ``weights`` is given, else fresh init) and a fresh
    classifier. The tiny trunk re-initialises its last conv + BN."""
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

    VKD ``Backbone.features_layers`` is a ModuleList of Sequentials: ``0`` = (conv1, bn1, relu, maxpool),
    ``1..4`` = ``Sequential(layerN)``, so layer keys carry an extra ``.0``:
    ``backbone.features_layers.2.0.1.conv1.weight`` = ``layer2[1].conv1.weight``. ``classifier.bottleneck.*``
    and ``classifier.classifier.weight`` keep their names.
    """
    m = re.match(r"(?:module\.)?backbone\.features_layers\.(\d)\.(.*)", key)
    if not m:
        return key.removeprefix("module.")
    idx, rest = m.groups()
    if idx == "0":
        sub, _, tail = rest.partition(".")
        name = {"0": "conv1", "1": "bn1"}.get(sub)
        return f"backbone.{name}.{tail}" if name else None
    sub, _, tail = rest.partition(".")
    return f"backbone.{_VKD_LAYERS[idx]}.{tail}" if sub == "0" else None


def read_checkpoint(path: str | Path, what: str = "checkpoint"):
    """The file's contents (``torch.load``, CPU, weights only); a missing or unloadable file is one line that
    names it (``FileNotFoundError`` / :class:`~shared.errors.CheckpointError`)."""
    return load_local_file(path, what)


def load_vkd_checkpoint(model: TriNet, path: str | Path, strict: bool = True):
    """Load a VKD ``chk_end`` / ``chk_di_1`` file into ``model`` through :func:`vkd_key_map`."""
    return load_weights(model, path, key_map=vkd_key_map, strict=strict)
