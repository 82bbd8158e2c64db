"""BP-Triplet Net: feature extractor G, bottleneck, classifier F and domain discriminator D.

The abstract fixes the parts [V]: a feature extractor, a source-supervised classifier, "a commonly used
adversarial loss" (here :mod:`bp_triplet.adversarial`) and the BP-Triplet loss on an embedding
(:mod:`bp_triplet.losses`). Everything about their shapes follows the CDAN lineage [L]:

* images: torchvision ResNet-50/101 (ImageNet), ``Linear(2048 -> 256)`` bottleneck (xavier),
  ``Linear(256 -> C)`` classifier, discriminator ``in -> 1024 -> 1024 -> 1``;
* digits: CDAN's LeNet (MNIST<->USPS, 28x28 grey, 500-d) and DTN (SVHN->MNIST, 32x32 RGB, 512-d), no
  bottleneck, discriminator hidden 500;
* the embedded 8x8 miniature: :class:`EmbeddedDigitNet` (spec 11).

The BP-Triplet embedding is ``z = f / ||f||`` on the bottleneck feature ``f`` [R]: the spec's choice,
because an unnormalised triplet term next to a gradient-reversal layer can blow the features up.

State-dict layout: ``backbone.*`` (torchvision names for ResNets), ``bottleneck.{weight,bias}``,
``classifier.{weight,bias}``, ``discriminator.ad_layer{1,2,3}.*``.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .adversarial import DomainDiscriminator, RandomMultilinearMap, adversarial_features, gradient_reverse


class EmbeddedDigitNet(nn.Module):
    """8x8 grey digits -> 128-d: conv3x3(32)-pool-conv3x3(64)-pool-fc128.

    Spec 11 sketches conv, conv, pool, fc128; a pool after each conv makes it ~3x cheaper on two CPU
    cores at the same width, which is what lets 3 seeds x 4 methods fit in 300 s.
    Shape: ``(B, 1, 8, 8) -> (B, 128)``.
    """

    out_features = 128

    def __init__(self, in_chans: int = 1):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_chans, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        )
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(64 * 2 * 2, 128), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


class LeNet(nn.Module):
    """CDAN's LeNet for MNIST<->USPS (thuml/CDAN ``network.LeNet``): ``(B, 1, 28, 28) -> (B, 500)``."""

    out_features = 500

    def __init__(self):
        super().__init__()
        self.conv_params = nn.Sequential(
            nn.Conv2d(1, 20, kernel_size=5), nn.MaxPool2d(2), nn.ReLU(),
            nn.Conv2d(20, 50, kernel_size=5), nn.Dropout2d(p=0.5), nn.MaxPool2d(2), nn.ReLU(),
        )
        self.fc_params = nn.Sequential(nn.Linear(50 * 4 * 4, 500), nn.ReLU(), nn.Dropout(p=0.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc_params(self.conv_params(x).flatten(1))


class DTN(nn.Module):
    """CDAN's DTN for SVHN->MNIST (thuml/CDAN ``network.DTN``): ``(B, 3, 32, 32) -> (B, 512)``."""

    out_features = 512

    def __init__(self):
        super().__init__()
        self.conv_params = nn.Sequential(
            nn.Conv2d(3, 64, 5, stride=2, padding=2), nn.BatchNorm2d(64), nn.Dropout2d(0.1), nn.ReLU(),
            nn.Conv2d(64, 128, 5, stride=2, padding=2), nn.BatchNorm2d(128), nn.Dropout2d(0.3), nn.ReLU(),
            nn.Conv2d(128, 256, 5, stride=2, padding=2), nn.BatchNorm2d(256), nn.Dropout2d(0.5), nn.ReLU(),
        )
        self.fc_params = nn.Sequential(nn.Linear(256 * 4 * 4, 512), nn.BatchNorm1d(512), nn.ReLU(),
                                       nn.Dropout())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc_params(self.conv_params(x).flatten(1))


def resnet_backbone(depth: int = 50, weights: str | Path | None = None) -> nn.Module:
    """torchvision ResNet with ``fc`` replaced by identity: ``(B, 3, H, W) -> (B, 2048)``.

    Keys keep torchvision's names (``conv1``, ``layer1``...), so an ImageNet file loads as is (``fc``
    dropped) and our checkpoints read ``backbone.conv1.weight``.
    """
    from shared.backbones import create_resnet

    net = create_resnet(depth, weights=weights)
    net.out_features = net.fc.in_features
    net.fc = nn.Identity()
    return net


def build_backbone(name: str, weights: str | None = None) -> nn.Module:
    """``embedded`` | ``lenet`` | ``dtn`` | ``resnet50`` | ``resnet101``."""
    if name == "embedded":
        return EmbeddedDigitNet()
    if name == "lenet":
        return LeNet()
    if name == "dtn":
        return DTN()
    if name in ("resnet50", "resnet101"):
        return resnet_backbone(int(name[6:]), weights or None)
    raise ValueError(f"model.backbone must be embedded | lenet | dtn | resnet50 | resnet101, got '{name}'")


def _xavier(m: nn.Linear) -> nn.Linear:
    nn.init.xavier_normal_(m.weight)  # thuml/CDAN init_weights for bottleneck and classifier
    nn.init.zeros_(m.bias)
    return m


class BPTripletNet(nn.Module):
    """G -> bottleneck -> (F, z, D).

    Args:
        backbone: ``G``, any module with ``out_features``.
        num_classes: ``C``.
        bottleneck_dim: width of ``f`` (0: no bottleneck, ``f`` is G's output, CDAN's digit nets).
        disc_hidden: discriminator width (1024 images, 500 digits).
        adv_variant: ``dann`` (D sees ``f``) or ``cdan`` (D sees ``f (x) softmax(F(f))``).
        with_discriminator: build D (off for the arms without adversarial loss).
        max_multilinear, random_dim: CDAN switches to a random multilinear map of ``random_dim`` when
            ``dim(f) * C > max_multilinear`` (thuml/CDAN: 4096 and 1024).

    ``forward(x, grl_coeff=None)`` returns a dict: ``features`` f ``(B, d)``, ``logits`` ``(B, C)``,
    ``embedding`` z = f/||f|| ``(B, d)``, and with ``grl_coeff`` set also ``domain`` ``(B,)``, D's
    probability "source" on gradient-reversed features. Putting D inside one forward keeps DDP's
    gradient synchronisation whole.
    """

    def __init__(self, backbone: nn.Module, num_classes: int, bottleneck_dim: int = 256,
                 disc_hidden: int = 1024, adv_variant: str = "dann", max_multilinear: int = 4096,
                 random_dim: int = 1024, disc_dropout: float = 0.5, with_discriminator: bool = True):
        super().__init__()
        self.backbone = backbone
        self.adv_variant = adv_variant
        feat = backbone.out_features
        self.bottleneck = _xavier(nn.Linear(feat, bottleneck_dim)) if bottleneck_dim else nn.Identity()
        self.feat_dim = bottleneck_dim or feat
        self.classifier = _xavier(nn.Linear(self.feat_dim, num_classes))
        self.multilinear = None
        d_in = self.feat_dim
        if adv_variant == "cdan":
            if self.feat_dim * num_classes > max_multilinear:
                self.multilinear = RandomMultilinearMap(self.feat_dim, num_classes, random_dim)
                d_in = random_dim
            else:
                d_in = self.feat_dim * num_classes
        elif adv_variant != "dann":
            raise ValueError(f"adv.variant must be dann | cdan, got '{adv_variant}'")
        # without adversarial loss (source_only, bp_no_adv) D is not built, so DDP sees no unused parameters
        self.discriminator = DomainDiscriminator(d_in, disc_hidden, disc_dropout) if with_discriminator else None

    def forward(self, x: torch.Tensor, grl_coeff: float | None = None) -> dict[str, torch.Tensor]:
        f = self.bottleneck(self.backbone(x))
        logits = self.classifier(f)
        out = {"features": f, "logits": logits, "embedding": F.normalize(f, dim=1)}
        if grl_coeff is not None and self.discriminator is not None:
            h = adversarial_features(f, logits.softmax(1), self.adv_variant, self.multilinear)
            out["domain"] = self.discriminator(gradient_reverse(h, grl_coeff)).squeeze(1)
        return out

    def head_parameters(self) -> list[nn.Parameter]:
        """Bottleneck, classifier and discriminator: the parts CDAN trains at 10x the backbone lr."""
        mods = [self.bottleneck, self.classifier] + ([self.discriminator] if self.discriminator is not None else [])
        return [p for m in mods for p in m.parameters()]
