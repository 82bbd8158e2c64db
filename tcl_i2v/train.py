"""Train the video teacher (stage 1, V2V) or the image student with a KD method (stage 2).

    python -m tcl_i2v.train --config tcl_i2v/configs/v2v_resnet50_1xb32-300e_mars.yaml data.root=/data/mars
    python -m tcl_i2v.train --config tcl_i2v/configs/tcl-ml_resnet50_1xb48-500e_mars.yaml data.root=/data/mars \
        kd.teacher_ckpt=runs/tcl_i2v/mars/v2v/last.pt

``kd.method`` picks the objective (spec 1.5, 1.6), all on one :class:`TeacherStudent` module:

- ``v2v``: teacher only, ``L_id + L_tri`` on N-frame clips (VKD ``train_v2v.py``);
- ``image``: student only (the image-only baseline S0);
- ``vkd``: frozen teacher, ``L_id + L_tri + 0.1 KD(tau 10) + 1e-4 SimDist`` (VKD ``train_distill.py``);
- ``tkp``: ``+ TKP_F + TKP_D`` on the teacher's frames seen by the student (TKP ``train.py``; separate
  classifiers and the soft triplet instead of TKP's shared classifier and four margin triplets);
- ``tcl``: ``L_S = L_id + L_tri + lambda_tcl L_TCL(T->S) [+ lambda_ml L_ML(S)]``; with ``kd.ml != none``
  the teacher trains too with ``L_T = L_id + L_tri + lambda_ml L_ML(T)`` (``A``) or ``+ L_TCL(S->T)`` (``B``).

Teacher and student have separate parameters; one Adam over both equals the paper's two Adam optimisers
when they share lr and weight decay (Adam is per-parameter).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from shared.cli import train_main
from shared.data.samplers import IdentitySampler
from shared.engine import RunConfig, Task

from . import losses as L
from .data import ClipDataset, load_tracklets, synvideo
from .model import TriNet, load_vkd_checkpoint, read_checkpoint, reinit_student
from .scoring import evaluate_i2v


@dataclass
class ModelConfig:
    backbone: str = "resnet50"  # resnet50 | tiny
    weights: str = ""  # local ImageNet ResNet state dict (never downloaded)
    tiny_widths: list[int] = field(default_factory=lambda: [32, 64, 96, 128])


@dataclass
class DataConfig:
    dataset: str = "mars"  # mars | duke (DukeMTMC-VideoReID) | veri (VeRi-776) | synvideo
    root: str = ""
    seed: int = 0  # synvideo generator seed
    train_ids: int = 60
    test_ids: int = 40
    height: int = 256
    width: int = 128
    n_frames: int = 8  # teacher train frames (VKD; VeRi's teacher: 1)
    test_frames: int = 0  # gallery frames at test (VKD: 8, first of each chunk); 0 = n_frames
    student_frames: int = 1  # M: 1 = image student [REC], 2 = VKD
    num_instances: int = 4  # K of P x K
    augment_gallery: bool = True  # MARS protocol (Duke and VeRi: false)


@dataclass
class KDConfig:
    method: str = "tcl"  # v2v | image | vkd | tkp | tcl
    teacher_ckpt: str = ""  # stage-1 teacher: our last.pt/best.pt or a VKD chk_end
    teacher_frozen: bool = True  # VKD: frozen, BN on batch statistics (ml != none trains it)
    student_init: str = "vkd"  # vkd (teacher copy, layer4 + classifier re-initialised) | scratch
    tcl_weight: float = 1.0  # lambda_tcl [REC]
    tcl_tau: float = 0.1  # [REC] sweep .05/.1/.5
    tcl_k: int = 1  # negatives per tuple (1 = batch-hard triplet)
    tcl_normalize: bool = True
    tcl_mining: str = "hard"  # hard | random
    tcl_tau_sq: bool = False
    tcl_level: str = "clip"  # clip: teacher clip embedding vs the student's image | frame: teacher frame embeddings
    #   vs the student on the same frames (as TKP's KD terms) [REC]
    ml: str = "none"  # none | A (DML KL on logits) | B (bidirectional TCL)
    ml_weight: float = 0.1  # lambda_ml (VKD kl_coeff) [REC]
    ml_tau: float = 10.0
    ml_tau_sq: bool = True  # x tau^2 (Hinton; VKD's KD term): without it the tau-10 KL is ~1e-3 and ML does nothing
    vkd_alpha: float = 0.1
    vkd_beta: float = 1e-4
    vkd_tau: float = 10.0
    tkp_weight: float = 1.0  # TKP_F and TKP_D (TKP: 1)
    teacher_scale: float = 1.0  # stress test: teacher embedding x this before the KD terms
    student_all_frames: bool = False  # control: the student's L_id/L_tri see all N clip frames as images


@dataclass
class TCLConfig(RunConfig):
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    kd: KDConfig = field(default_factory=KDConfig)


class TeacherStudent(nn.Module):
    def __init__(self, teacher: TriNet, student: TriNet):
        super().__init__()
        self.teacher, self.student = teacher, student


def freeze_teacher(teacher: nn.Module) -> None:
    """VKD's frozen teacher stays in train mode with ``track_running_stats=False``: BN normalises with the
    batch statistics. momentum 0 gives that forward while keeping the stored running stats unchanged."""
    teacher.requires_grad_(False)
    for m in teacher.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.momentum = 0.0


def load_teacher_state(teacher: TriNet, path: str) -> None:
    sd = read_checkpoint(path, "teacher checkpoint (kd.teacher_ckpt)")
    if isinstance(sd, dict) and "model" in sd:  # our engine checkpoint of a TeacherStudent
        sd = {k[len("teacher."):]: v for k, v in sd["model"].items() if k.startswith("teacher.")}
        teacher.load_state_dict(sd)
    else:
        load_vkd_checkpoint(teacher, path)


class KDTask(Task):
    def __init__(self, cfg: TCLConfig, splits: dict | None = None):
        self.cfg, self.kd, self.device = cfg, cfg.kd, cfg.engine.device
        d = cfg.data
        if splits is None:
            splits = (synvideo(d.train_ids, d.test_ids, seed=d.seed, size=(d.height, d.width))
                      if d.dataset == "synvideo" else load_tracklets(d.dataset, d.root))
        self.splits = splits
        self.transform = None if d.dataset == "synvideo" else _real_transforms(d)
        self.dataset = ClipDataset(splits["train"], d.n_frames, d.student_frames, self.transform[0]
                                   if self.transform else None, seed=cfg.engine.seed)
        self.num_classes = len(self.dataset.pid2label)
        if self.kd.method not in ("v2v", "image", "vkd", "tkp", "tcl"):
            raise ValueError(f"kd.method must be v2v|image|vkd|tkp|tcl, got {self.kd.method!r}")

    def _net(self) -> TriNet:
        m = self.cfg.model
        return TriNet(self.num_classes, m.backbone, m.weights or None, tuple(m.tiny_widths))

    def build_model(self) -> nn.Module:
        teacher, student = self._net(), self._net()
        if self.kd.teacher_ckpt:
            load_teacher_state(teacher, self.kd.teacher_ckpt)
        if self.kd.method not in ("v2v", "image") and self.kd.student_init == "vkd":
            reinit_student(student, teacher, self.cfg.model.weights or None)
        if self.teacher_is_frozen:
            freeze_teacher(teacher)
        return TeacherStudent(teacher, student)

    @property
    def teacher_is_frozen(self) -> bool:
        return self.kd.method in ("vkd", "tkp", "tcl") and self.kd.teacher_frozen and self.kd.ml == "none"

    def train_dataset(self, epoch: int):
        self.dataset.epoch = epoch
        return self.dataset

    def train_sampler(self, dataset, epoch, world_size, rank):
        return IdentitySampler(dataset.labels, self.cfg.engine.batch_size // world_size, self.cfg.data.num_instances,
                               seed=self.cfg.engine.seed, num_replicas=world_size, rank=rank)

    def training_step(self, model: nn.Module, batch, trainer=None) -> dict[str, torch.Tensor]:
        clip, img, y, _ = batch
        kd, method = self.kd, self.kd.method
        out: dict[str, torch.Tensor] = {}
        t_out = s_out = None
        if method != "image":
            if self.teacher_is_frozen:
                with torch.no_grad():
                    t_out = model.teacher(clip)
            else:
                t_out = model.teacher(clip)
                out["t_id"] = nn.functional.cross_entropy(t_out["logits"], y)
                out["t_tri"] = L.batch_hard_soft_triplet(t_out["emb"], y)
        if method != "v2v":
            s_out = model.student(img)
            s_sup, y_sup = s_out, y
            if kd.student_all_frames:  # as many images per step as the TKP student gets
                s_sup, y_sup = model.student(clip.flatten(0, 1)[:, None]), y.repeat_interleave(clip.shape[1])
            out["s_id"] = nn.functional.cross_entropy(s_sup["logits"], y_sup)
            out["s_tri"] = L.batch_hard_soft_triplet(s_sup["emb"], y_sup)
        if t_out is not None and s_out is not None:
            t_emb = t_out["emb"] * kd.teacher_scale
            if method == "vkd":
                out["kd"] = kd.vkd_alpha * L.vkd_kd(t_out["logits"], s_out["logits"], kd.vkd_tau)
                out["simdist"] = kd.vkd_beta * L.vkd_simdist(t_emb, s_out["emb"])
            elif method == "tkp":
                frames = model.student(clip.flatten(0, 1)[:, None])["emb"]
                t_frames = t_out["frame_emb"].flatten(0, 1) * kd.teacher_scale
                out["tkp_f"] = kd.tkp_weight * L.tkp_feature(frames, t_frames)
                out["tkp_d"] = kd.tkp_weight * L.tkp_distance(frames, t_frames)
            elif method == "tcl":
                args = dict(tau=kd.tcl_tau, k=kd.tcl_k, normalize=kd.tcl_normalize, mining=kd.tcl_mining,
                            tau_sq=kd.tcl_tau_sq)
                if kd.tcl_level == "frame":  # the teacher's frames, seen one by one by the student (as TKP)
                    s_tcl, t_tcl = model.student(clip.flatten(0, 1)[:, None])["emb"], t_out["frame_emb"].flatten(0, 1)
                    t_tcl, y_tcl = t_tcl * kd.teacher_scale, y.repeat_interleave(clip.shape[1])
                elif kd.tcl_level == "clip":
                    s_tcl, t_tcl, y_tcl = s_out["emb"], t_emb, y
                else:
                    raise ValueError(f"kd.tcl_level must be clip|frame, got {kd.tcl_level!r}")
                out["tcl"] = kd.tcl_weight * L.tcl_loss(s_tcl, t_tcl, y_tcl, **args)
                if kd.ml == "A":
                    ml_s, ml_t = L.mutual_kl(t_out["logits"], s_out["logits"], kd.ml_tau, kd.ml_tau_sq)
                    out["ml_s"], out["ml_t"] = kd.ml_weight * ml_s, kd.ml_weight * ml_t
                elif kd.ml == "B":
                    out["tcl_t"] = kd.ml_weight * L.tcl_loss(t_tcl if kd.tcl_level == "frame" else t_out["emb"],
                                                             s_tcl, y_tcl, **args)
                elif kd.ml != "none":
                    raise ValueError(f"kd.ml must be none|A|B, got {kd.ml!r}")
        out["loss"] = sum(out.values())
        return out

    def evaluate(self, model: nn.Module, trainer=None) -> dict[str, float]:
        d = self.cfg.data
        m = model.module if hasattr(model, "module") else model
        student = None if self.kd.method == "v2v" else m.student
        teacher = None if self.kd.method == "image" else m.teacher
        return evaluate_i2v(student, teacher, self.splits["query"], self.splits["gallery"], d.test_frames or d.n_frames,
                            d.augment_gallery, self.transform[1] if self.transform else None, self.device)


def _real_transforms(d: DataConfig):
    """VKD: bicubic resize, pad 10 + random crop, flip, ImageNet norm, RandomErasing .5 (train)."""
    from torchvision import transforms as T

    norm = T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    size = (d.height, d.width)
    train = T.Compose([T.Resize(size, T.InterpolationMode.BICUBIC), T.Pad(10), T.RandomCrop(size),
                       T.RandomHorizontalFlip(), T.ToTensor(), norm, T.RandomErasing(0.5)])
    test = T.Compose([T.Resize(size, T.InterpolationMode.BICUBIC), T.ToTensor(), norm])
    return train, test


def main(argv=None):
    return train_main("python -m tcl_i2v.train", __doc__, TCLConfig, lambda cfg, run_dir: KDTask(cfg), argv)


if __name__ == "__main__":
    main()

