"""Train BP-Triplet Net (or one of its ablations) on one adaptation task.

    python -m bp_triplet.train --config bp_triplet/configs/bp-triplet_embeddednet_1xb32-25e_digits-embedded.yaml
    python -m bp_triplet.train --config bp_triplet/configs/bp-triplet_resnet50_1xb36-20k_office31.yaml \
        data.root=/data/office31 data.source=A data.target=W

Total loss (spec 3, weights [R])::

    L = L_cls + lambda_adv L_adv + lambda_bp(i) L_BP + lambda_t CE(F(x_t), y_hat_t)

``L_cls`` on labelled source; ``L_adv`` DANN/CDAN (:mod:`bp_triplet.adversarial`); ``L_BP`` on source
plus confidently pseudo-labelled target (:mod:`bp_triplet.losses`), ramped like the GRL coefficient;
the last term is off by default. Arms of the embedded study are configs of this one task.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from shared.cli import train_main
from shared.data import RandomPairDataset
from shared.engine import RunConfig, Task
from shared.metrics.classification import mean_class_accuracy, top1_accuracy

from .adversarial import domain_accuracy, domain_adversarial_loss, grl_coeff, sample_weights
from .data import ClassChunkPairs, build_domains, collate_chunks
from .losses import batch_hard_triplet_loss, bp_triplet_loss
from .model import BPTripletNet, build_backbone
from .pseudo_labels import PseudoLabelState, predict_probs, pseudo_label_stats, select_confident


@dataclass
class ModelConfig:
    backbone: str = "embedded"  # embedded | lenet | dtn | resnet50 | resnet101
    weights: str = ""  # local ImageNet state dict for ResNets (never downloaded)
    bottleneck_dim: int = 64  # 0: no bottleneck (CDAN digit nets)
    disc_hidden: int = 128
    disc_dropout: float = 0.5
    head_lr_mult: float = 10.0  # bottleneck, classifier, discriminator lr x this (thuml/CDAN)


@dataclass
class DataConfig:
    dataset: str = "embedded"  # embedded | digits | office31 | imageclef | officehome | visda
    root: str = ""
    source: str = ""  # digits: mnist | usps | svhn; lists: A | Ar | I | Synthetic ...
    target: str = ""
    reverse: bool = False  # embedded: handwritten -> rendered
    # embedded: the data draw (the rendered source and the handwritten-target subset); null: the run's
    # engine.seed, so every seed has its own draw
    draw_seed: int | None = None
    n_source: int = 3000
    n_target: int = 0  # embedded: handwritten digits drawn of the 1,797 (0: all, the same for every draw)
    pairs_per_epoch: int = 0  # source/target pairs per epoch (0: the larger domain's size)
    # random: random source/target pairs (shared.data.RandomPairDataset). pk: P x K class chunks
    # (ClassChunkPairs; engine.batch_size then counts classes P, each with num_instances source and
    # num_instances pseudo-labelled target samples) [L: spec 4.3]
    sampling: str = "random"
    num_instances: int = 4
    eval_batch_size: int = 256
    image_size: int = 224  # image lists: resize to resize x resize, crop image_size (random / centre)
    resize: int = 256


@dataclass
class AdvConfig:
    enabled: bool = True
    variant: str = "dann"  # dann | cdan   [L: paper says "a commonly used adversarial loss"]
    weighting: str = "none"  # none | srada | cdan_e   (per-sample w, adversarial.sample_weights)
    weight: float = 1.0  # lambda_adv [R]
    max_iters: int = 10000  # GRL ramp length (thuml/CDAN: 10000)
    alpha: float = 10.0
    start_step: int = 0  # digits: CDAN starts the adversarial loss at epoch 2


@dataclass
class TripletConfig:
    kind: str = "bp"  # none | bp | batch_hard
    weight: float = 1.0  # lambda_bp, reached by the same sigmoid ramp as the GRL coefficient [R]
    ramp: bool = True
    gamma: float = 10.0  # [R]
    margin: float = 0.1  # [R] bp margin on squared distances of unit vectors
    alpha_intra: float = 0.5  # [R] same-domain pair prior
    alpha_inter: float = 1.0  # [R] cross-domain pair prior
    tau: float | None = 0.1  # [R] hard-pair attention temperature; null = no attention
    confidence: bool = True  # [R] weight target samples by their pseudo-label confidence
    detach_weights: bool = True  # [R]
    hard_margin: float = 0.3  # batch_hard margin (SRADA-style baseline)


@dataclass
class PseudoConfig:
    threshold: float = 0.9  # tau_c [R]
    warmup_steps: int = 200  # first refresh; before it only L_cls + L_adv [R]
    every_steps: int = 200  # refresh period K [R]
    max_per_class: int = 0
    target_ce_weight: float = 0.0  # lambda_t (spec arm c); 0 = off


@dataclass
class LrConfig:
    schedule: str = "inv"  # inv: lr (1 + gamma i)^-power per iteration (thuml/CDAN) | engine: sched.*
    gamma: float = 0.001
    power: float = 0.75


@dataclass
class BPTripletConfig(RunConfig):
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    adv: AdvConfig = field(default_factory=AdvConfig)
    triplet: TripletConfig = field(default_factory=TripletConfig)
    pseudo: PseudoConfig = field(default_factory=PseudoConfig)
    lr: LrConfig = field(default_factory=LrConfig)


class BPTripletTask(Task):
    """One UDA task: source labelled, target unlabelled; evaluates target top-1 every epoch."""

    def __init__(self, cfg: BPTripletConfig):
        self.cfg = cfg
        d = cfg.data
        if cfg.triplet.kind not in ("none", "bp", "batch_hard"):
            raise ValueError(f"triplet.kind must be none | bp | batch_hard, got '{cfg.triplet.kind}'")
        if cfg.lr.schedule not in ("inv", "engine"):
            raise ValueError(f"lr.schedule must be inv | engine, got '{cfg.lr.schedule}'")
        draw = cfg.engine.seed if d.draw_seed is None else d.draw_seed
        self.domains = build_domains(d.dataset, d.root, d.source, d.target, draw, d.n_source, d.reverse,
                                     d.image_size, d.resize, d.n_target)
        self.pseudo = PseudoLabelState(len(self.domains.target_train))
        self.uses_pseudo = cfg.triplet.kind != "none" or cfg.pseudo.target_ce_weight > 0
        if d.sampling not in ("random", "pk"):
            raise ValueError(f"data.sampling must be random | pk, got '{d.sampling}'")
        self.collate_fn = collate_chunks if d.sampling == "pk" else None
        # The pseudo labels the current epoch's P x K dataset was built from. Labels refreshed mid-epoch
        # act from the next epoch's dataset on; a mid-epoch resume must rebuild this epoch's dataset from
        # these, not from the refreshed ones (else it draws different chunks and diverges).
        self._epoch_pseudo: tuple[int, np.ndarray] | None = None
        self.pseudo_probe: list[dict[str, float]] = []  # rows without pseudo labels: the rule, measured only

    # ------------------------------------------------------------------ engine hooks
    def build_model(self) -> nn.Module:
        m = self.cfg.model
        return BPTripletNet(build_backbone(m.backbone, m.weights), self.domains.num_classes, m.bottleneck_dim,
                            m.disc_hidden, self.cfg.adv.variant, disc_dropout=m.disc_dropout,
                            with_discriminator=self.cfg.adv.enabled)

    def param_groups(self, model: BPTripletNet) -> list[dict]:
        head = {id(p) for p in model.head_parameters()}
        base = [p for p in model.parameters() if id(p) not in head]
        return [{"params": base, "lr_factor": 1.0},
                {"params": model.head_parameters(), "lr_factor": self.cfg.model.head_lr_mult}]

    def train_dataset(self, epoch: int):
        d = self.cfg.data
        n = d.pairs_per_epoch or max(len(self.domains.source), len(self.domains.target_train))
        if d.sampling == "random":
            return RandomPairDataset(self.domains.source, self.domains.target_train, self.cfg.engine.seed, epoch, n)
        if self._epoch_pseudo is None or self._epoch_pseudo[0] != epoch:
            self._epoch_pseudo = (epoch, self.pseudo.labels.numpy().copy())
        return ClassChunkPairs(self.domains.source, self.domains.source.labels, self.domains.target_train,
                               self._epoch_pseudo[1], d.num_instances, self.cfg.engine.seed, epoch,
                               max(1, n // d.num_instances))

    def _set_inv_lr(self, trainer, step: int) -> None:
        scale = (1.0 + self.cfg.lr.gamma * step) ** (-self.cfg.lr.power)
        for g in trainer.optimizer.param_groups:
            g["lr"] = self.cfg.optim.lr * g.get("lr_factor", 1.0) * scale

    def training_step(self, model: nn.Module, batch, trainer) -> dict[str, torch.Tensor]:
        (xs, ys, _), (xt, _target_label_never_used, it) = batch
        step, a, t = trainer.global_step, self.cfg.adv, self.cfg.triplet
        if self.cfg.lr.schedule == "inv":
            self._set_inv_lr(trainer, step)
        adv_on = a.enabled and step >= a.start_step
        coeff = grl_coeff(step - a.start_step, a.max_iters, a.alpha) if adv_on else 0.0
        out = model(torch.cat([xs, xt]), grl_coeff=coeff if a.enabled else None)
        ns = xs.shape[0]
        logits_s, logits_t = out["logits"][:ns], out["logits"][ns:]
        loss_cls = F.cross_entropy(logits_s, ys)
        losses = {"cls": loss_cls}
        loss = loss_cls
        if a.enabled:
            p = out["logits"].softmax(1)
            w = sample_weights(p, a.weighting)
            d = out["domain"]
            loss_adv = domain_adversarial_loss(d[:ns], d[ns:], w[:ns], w[ns:])
            loss = loss + (a.weight if adv_on else 0.0) * loss_adv
            losses.update(adv=loss_adv, domain_acc=domain_accuracy(d[:ns], d[ns:]),
                          grl=torch.tensor(coeff, device=d.device))
        if self.uses_pseudo and self.pseudo.history:  # after the warm-up's first refresh
            pl, conf = self.pseudo.lookup(it, xs.device)
            ramp = grl_coeff(step, a.max_iters, a.alpha) if t.ramp else 1.0
            if t.kind != "none":
                labels = torch.cat([ys, pl])
                z = out["embedding"]
                if t.kind == "bp":
                    doms = torch.cat([torch.zeros_like(ys), torch.ones_like(pl)])
                    c = torch.cat([torch.ones(ns, device=z.device), conf]) if t.confidence else None
                    loss_tri = bp_triplet_loss(z, labels, doms, c, t.gamma, t.margin, t.alpha_intra,
                                               t.alpha_inter, t.tau, t.detach_weights)
                else:
                    loss_tri = batch_hard_triplet_loss(z, labels, t.hard_margin)
                loss = loss + t.weight * ramp * loss_tri
                losses["triplet"] = loss_tri
            if self.cfg.pseudo.target_ce_weight > 0 and bool((pl >= 0).any()):
                loss_t = F.cross_entropy(logits_t[pl >= 0], pl[pl >= 0])
                loss = loss + self.cfg.pseudo.target_ce_weight * loss_t
                losses["target_ce"] = loss_t
        return {"loss": loss, **losses}

    @torch.no_grad()
    def refresh_pseudo_labels(self, trainer) -> dict:
        model = trainer.model
        was = model.training
        model.eval()
        probs = predict_probs(model, self.domains.target_train_plain, trainer.device, self.cfg.data.eval_batch_size)
        model.train(was)
        return self.pseudo.update(probs, self.cfg.pseudo.threshold, self.cfg.pseudo.max_per_class,
                                  self.domains.target_train_labels, trainer.global_step)

    @torch.no_grad()
    def probe_pseudo_labels(self, trainer) -> dict:
        """The refresh rule's coverage and precision for a row that trains on no pseudo label (source-only,
        DANN): the labels are measured, logged in ``pseudo_probe`` and dropped, so nothing they do changes."""
        model = trainer.model
        was = model.training
        model.eval()
        probs = predict_probs(model, self.domains.target_train_plain, trainer.device, self.cfg.data.eval_batch_size)
        model.train(was)
        labels, _ = select_confident(probs, self.cfg.pseudo.threshold, self.cfg.pseudo.max_per_class)
        stats = {"step": float(trainer.global_step), **pseudo_label_stats(labels, self.domains.target_train_labels)}
        self.pseudo_probe.append(stats)
        return stats

    @property
    def pseudo_history(self) -> list[dict[str, float]]:
        """Coverage/precision at every refresh: of the labels trained on, or (rows without) of the probe."""
        return self.pseudo.history if self.uses_pseudo else self.pseudo_probe

    def on_step_end(self, trainer, global_step: int) -> None:
        p = self.cfg.pseudo
        if global_step >= p.warmup_steps and (global_step - p.warmup_steps) % p.every_steps == 0:
            stats = self.refresh_pseudo_labels(trainer) if self.uses_pseudo else self.probe_pseudo_labels(trainer)
            trainer.log({"epoch": trainer.epoch + 1, **stats, "step": global_step})

    def evaluate(self, model: nn.Module, trainer) -> dict[str, float]:
        probs = predict_probs(model, self.domains.target_test, trainer.device, self.cfg.data.eval_batch_size)
        labels = np.asarray(self.domains.target_test.labels)
        out = {"target_top1": top1_accuracy(probs, labels),
               "target_mean_class": mean_class_accuracy(probs, labels, self.domains.num_classes)[0]}
        if self.pseudo_history:
            out.update({k: v for k, v in self.pseudo_history[-1].items() if k != "step"})
        return out

    def state_dict(self) -> dict:
        out = {"pseudo": self.pseudo.state_dict(), "pseudo_probe": [dict(h) for h in self.pseudo_probe]}
        if self._epoch_pseudo is not None:
            out["epoch_pseudo"] = {"epoch": self._epoch_pseudo[0],
                                   "labels": torch.from_numpy(np.asarray(self._epoch_pseudo[1], np.int64))}
        return out

    def load_state_dict(self, state: dict) -> None:
        if "pseudo" in state:
            self.pseudo.load_state_dict(state["pseudo"])
        self.pseudo_probe = [dict(h) for h in state.get("pseudo_probe", [])]
        if "epoch_pseudo" in state:
            e = state["epoch_pseudo"]
            self._epoch_pseudo = (int(e["epoch"]), e["labels"].numpy())


def build_task(cfg: BPTripletConfig, run_dir: Path) -> BPTripletTask:
    return BPTripletTask(cfg)


def main(argv=None):
    return train_main("python -m bp_triplet.train", __doc__, BPTripletConfig, build_task, argv)


if __name__ == "__main__":
    main()
