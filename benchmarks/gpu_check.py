"""``make gpu-check``: a few training steps of every paper's real-size model on every visible GPU.

For each paper, the model its real config builds (the recipe's architecture and input size, the per-GPU batch of
the config's ``<gpus>xb<batch>`` name, the recipe's optimiser) runs ``--warmup`` + ``--steps`` training steps
under bf16 autocast inside ``DistributedDataParallel`` (nccl, one process per GPU through torchrun, also on one
GPU), and the check prints samples/s over all GPUs, the peak memory of rank 0 and, for the DeiT-S models, the
model FLOP utilisation (MFU): the forward+backward FLOPs of one step, counted by
``torch.utils.flop_counter.FlopCounterMode``, times the steps per second, over the card's dense bf16 peak (the
datasheet's, and the one measured here with an 8192^3 bf16 matrix product).

What it measures and what not: the batches are random tensors made on the GPU once, so the numbers are the
model's compute (forward, backward, DDP all-reduce, optimiser step), not the data pipeline. The loss is the
paper's own where it is a plain function of the model's output (TransReID-SSL's ID + triplet, CDTrans' three-branch
loss, MHFormer's MPJPE, MotionRGBD's multi-loss, BP-Triplet's CE + domain loss); for TCL and TransFGU, whose losses
need mined pairs or pseudo labels, it is cross-entropy on the same outputs (their cost is the model's). Weight
files are not loaded (random init): the shapes, not the values, set the cost.

On a machine without CUDA it says so and exits 0. ``--device cpu`` runs the same code on the CPU (the tests do,
with batch 1), for checking the cases without a GPU.

    make gpu-check                                  # every case, every visible GPU
    python benchmarks/gpu_check.py --only deit_s_knn,deit_s_dense --steps 20 --out runs/gpu_check
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

REPO = Path(__file__).resolve().parents[1]
# run as a script, benchmarks/ is sys.path[0] and its knn_attention.py, elsa.py, ... would shadow the papers
sys.path[:] = [str(REPO)] + [p for p in sys.path if Path(p or ".").resolve() not in (REPO, REPO / "benchmarks")]

# dense bf16 tensor-core peak (TFLOP/s, no sparsity) by the vendors' datasheets; matched on the device name
DATASHEET_BF16_TFLOPS = {"H200": 989.4, "H100 SXM": 989.4, "H100 PCIe": 756.0, "H100": 989.4, "A100": 312.0,
                         "L40S": 362.1, "A10G": 70.0, "L4": 121.0, "V100": 0.0}


@dataclass
class Case:
    name: str
    paper: str
    config: str  # relative to the paper folder
    unit: str  # what one sample is
    build: Callable  # (cfg, batch, device) -> (model, step(model) -> loss)
    mfu: bool = False


def per_gpu_batch(config: str) -> int:
    """The per-GPU batch of a config named ``..._<gpus>xb<batch>-...`` (the repo's naming convention)."""
    m = re.search(r"_(\d+)xb(\d+)", Path(config).name)
    if not m:
        raise ValueError(f"{config}: the name carries no '<gpus>xb<batch>' part")
    return int(m.group(2))


def load(paper: str, config: str, schema_name: str, overrides: tuple[str, ...] = ()):
    import importlib

    from shared.config import load_config

    schema = getattr(importlib.import_module(f"{paper}.train"), schema_name)
    return load_config(REPO / paper / "configs" / config, schema, list(overrides))


def _ce_step(model_out: Callable[[nn.Module], torch.Tensor], classes: int, b: int, dev):
    y = torch.randint(0, classes, (b,), device=dev)
    return lambda model: F.cross_entropy(model_out(model).float(), y)


# ------------------------------------------------------------------------------------------------ the cases
def build_knn(cfg, b, dev):
    from knn_attention.train import build_model

    model = build_model(cfg.model)
    s = cfg.data.img_size
    x = torch.randn(b, 3, s, s, device=dev)
    return model, _ce_step(lambda m: m(x), cfg.model.num_classes, b, dev)


def build_srstem(cfg, b, dev):
    from scaled_relu_stem.model import create_stem_vit

    m = cfg.model
    model = create_stem_vit(m.stem, img_size=m.img_size, patch_size=m.patch_size, in_chans=m.in_chans,
                            embed_dim=m.embed_dim, depth=m.depth, num_heads=m.num_heads, num_classes=m.num_classes,
                            drop_path_rate=m.drop_path_rate)
    x = torch.randn(b, m.in_chans, m.img_size, m.img_size, device=dev)
    return model, _ce_step(lambda mod: mod(x), m.num_classes, b, dev)


def build_elsa(cfg, b, dev):
    from elsa.train import build_model

    model = build_model(cfg.model, cfg.data.num_classes)
    s = cfg.model.img_size
    x = torch.randn(b, 3, s, s, device=dev)
    return model, _ce_step(lambda m: m(x), cfg.data.num_classes, b, dev)


def build_cdtrans(cfg, b, dev):
    from cdtrans.losses import uda_loss
    from cdtrans.train import build_model

    classes = 31
    model = build_model(cfg, classes)
    s = cfg.model.img_size
    xs, xt = torch.randn(b, 3, s, s, device=dev), torch.randn(b, 3, s, s, device=dev)
    ys = torch.randint(0, classes, (b,), device=dev)
    u = cfg.uda
    return model, lambda m: uda_loss(m(xs, xt, fusion=u.fusion), ys, ys, fusion=u.fusion,
                                     distill_weight=u.distill_weight)["loss"]


def build_transreid(cfg, b, dev):
    from transreid_ssl.losses import reid_loss
    from transreid_ssl.model import ReIDModel
    from transreid_ssl.train import build_backbone

    ids = 751  # Market-1501's training identities
    model = ReIDModel(build_backbone(cfg.model), ids, cfg.model.neck_feat)
    h, w = cfg.model.img_size
    x = torch.randn(b, 3, h, w, device=dev)
    k = cfg.data.num_instances
    pid = (torch.arange(b, device=dev) // k) % ids  # P identities x K images, as the official sampler

    def step(m):
        logits, feat = m(x)
        return reid_loss(logits, feat, pid)["loss"]

    return model, step


def build_mhformer(cfg, b, dev):
    from mhformer.losses import mpjpe_loss
    from mhformer.train import MHFormerTask

    task = MHFormerTask.__new__(MHFormerTask)  # build_model reads only the config: no data needed
    task.cfg = cfg
    model = task.build_model()
    m = cfg.model
    x = torch.randn(b, m.frames, m.n_joints, 2, device=dev)
    y = torch.randn(b, m.frames, m.out_joints, 3, device=dev)
    return model, lambda mod: mpjpe_loss(mod(x), y)


def build_motion(cfg, b, dev):
    from motion_rgbd.losses import unimodal_loss
    from motion_rgbd.model import MotionNet
    from motion_rgbd.train import net_kwargs

    model = MotionNet(cfg.data.num_classes, **net_kwargs(cfg.model, cfg.engine.epochs))
    t, s = cfg.model.frames, 224  # the recipe's training crop
    x = torch.randn(b, 3, t, s, s, device=dev)
    g = torch.rand(b, 1, t, s, s, device=dev)
    y = torch.randint(0, cfg.data.num_classes, (b,), device=dev)

    def step(m):
        out, kl, _ = m(x, g)
        return unimodal_loss(out, kl, y, cfg.loss_weights, cfg.distill, cfg.label_smoothing)["loss"]

    return model, step


def build_transfgu(cfg, b, dev):
    from transfgu.train import Segmenter

    model = Segmenter(cfg)
    s = cfg.data.size // 2  # official: training crops resized to H/2
    x = torch.randn(b, 3, s, s, device=dev)
    c = cfg.data.num_classes

    def step(m):
        logits = m(x)[0]
        y = torch.randint(0, c, (logits.shape[0], *logits.shape[2:]), device=dev)
        return F.cross_entropy(logits.float(), y)

    return model, step


def build_tcl(cfg, b, dev):
    from tcl_i2v.model import TriNet

    classes = 625  # MARS' training identities
    m = cfg.model
    teacher, student = (TriNet(classes, m.backbone, None, tuple(m.tiny_widths)) for _ in range(2))
    model = nn.ModuleDict({"teacher": teacher, "student": student})
    h, w, t = cfg.data.height, cfg.data.width, cfg.data.n_frames
    clip = torch.randn(b, t, 3, h, w, device=dev)
    img = clip[:, 0]
    y = torch.randint(0, classes, (b,), device=dev)

    def step(mod):  # mutual learning: both networks train; teacher on the clip, student on one frame
        inner = getattr(mod, "module", mod)
        return (F.cross_entropy(inner["teacher"](clip)["logits"].float(), y)
                + F.cross_entropy(inner["student"](img)["logits"].float(), y))

    return model, step


def build_bp(cfg, b, dev):
    from bp_triplet.adversarial import domain_adversarial_loss
    from bp_triplet.model import BPTripletNet, build_backbone

    classes, m = 31, cfg.model
    model = BPTripletNet(build_backbone(m.backbone, None), classes, m.bottleneck_dim, m.disc_hidden,
                         cfg.adv.variant, disc_dropout=m.disc_dropout, with_discriminator=True)
    s = 224
    x = torch.randn(2 * b, 3, s, s, device=dev)  # source + target halves
    ys = torch.randint(0, classes, (b,), device=dev)

    def step(mod):
        out = mod(x, grl_coeff=1.0)
        d = out["domain"]
        return F.cross_entropy(out["logits"][:b].float(), ys) + domain_adversarial_loss(d[:b].float(), d[b:].float())

    return model, step


CASES = [
    Case("deit_s_dense", "knn_attention", "dense_deit-small_4xb256-300e_in1k.yaml", "images", build_knn, mfu=True),
    Case("deit_s_knn", "knn_attention", "knn_deit-small_4xb256-300e_in1k.yaml", "images", build_knn, mfu=True),
    Case("deit_s_scaled_relu_stem", "scaled_relu_stem", "scaled_relu_stem_deit-s_8xb128-300e_in1k.yaml", "images",
         build_srstem, mfu=True),
    Case("elsa_swin_t", "elsa", "elsa_swin-tiny_8xb128-310e_in1k.yaml", "images", build_elsa),
    Case("cdtrans_deit_s", "cdtrans", "cdtrans_deit-small_1xb64-40e_office31.yaml", "pairs", build_cdtrans),
    Case("transreid_vit_s", "transreid_ssl", "transreid_vit-small_1xb64-120e_market1501.yaml", "images",
         build_transreid),
    Case("mhformer_351f", "mhformer", "mhformer_351f_1xb128-19e_h36m-cpn.yaml", "sequences", build_mhformer),
    Case("motion_rgbd_i3d_dsn", "motion_rgbd", "motionrgbd_i3d-dsn_8xb4-100e_nvgesture-rgb.yaml", "clips",
         build_motion),
    Case("transfgu_vit_s8", "transfgu", "transfgu_vit-s8_1xb256-200e_cocostuff27.yaml", "images", build_transfgu),
    Case("tcl_ml_resnet50", "tcl_i2v", "tcl-ml_resnet50_1xb48-500e_mars.yaml", "clips", build_tcl),
    Case("bp_triplet_resnet50", "bp_triplet", "bp-triplet_resnet50_1xb36-20k_office31.yaml", "image pairs",
         build_bp),
]
SCHEMAS = {"knn_attention": "KNNConfig", "scaled_relu_stem": "SRStemConfig", "elsa": "ElsaConfig",
           "cdtrans": "CDTransConfig", "transreid_ssl": "TransReIDSSLConfig", "mhformer": "MHFormerConfig",
           "motion_rgbd": "MotionConfig", "transfgu": "TransFGUConfig", "tcl_i2v": "TCLConfig",
           "bp_triplet": "BPTripletConfig"}


# ------------------------------------------------------------------------------------------------ measuring
def datasheet_peak(name: str) -> float | None:
    for key, tflops in DATASHEET_BF16_TFLOPS.items():
        if key in name and tflops > 0:
            return tflops
    return None


def measured_matmul_peak(dev: torch.device, n: int = 8192, reps: int = 10) -> float:
    """TFLOP/s of an n^3 bf16 matrix product (mean of ``reps`` after 3 warm-ups)."""
    a = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize(dev)
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    torch.cuda.synchronize(dev)
    return 2 * n ** 3 * reps / (time.perf_counter() - t) / 1e12


def step_flops(model: nn.Module, step: Callable, amp) -> float:
    """FLOPs of one forward + backward (matrix products, convolutions, attention), by FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        with amp():
            loss = step(model)
        loss.backward()
    model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def run_case(case: Case, args, dev: torch.device, world: int) -> dict:
    from contextlib import nullcontext

    from shared.engine.optim import build_optimizer, default_param_groups

    cfg = load(case.paper, case.config, SCHEMAS[case.paper])
    b = args.batch or per_gpu_batch(case.config)
    torch.manual_seed(0)
    model, step = case.build(cfg, b, dev)
    model = model.to(dev)
    use_ddp = world > 1 or (dev.type == "cuda" and torch.distributed.is_initialized())
    wrapped = (nn.parallel.DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None,
                                                   find_unused_parameters=True) if use_ddp else model)
    params = [p for p in model.parameters() if p.requires_grad]
    optim = build_optimizer(default_param_groups(nn.ParameterList(params), cfg.optim) if params else [], cfg.optim)

    def amp():
        return torch.autocast(dev.type, dtype=torch.bfloat16) if args.amp == "bf16" else nullcontext()

    flops = step_flops(model, step, amp) if case.mfu else None
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    t0 = None
    losses = []
    for i in range(args.warmup + args.steps):
        if i == args.warmup:
            sync()
            t0 = time.perf_counter()
        with amp():
            loss = step(wrapped)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        losses.append(loss.detach())
    sync()
    seconds = time.perf_counter() - (t0 if t0 is not None else time.perf_counter())
    loss_values = torch.stack(losses).float().cpu()
    per_step = seconds / max(args.steps, 1)
    row = {"case": case.name, "paper": case.paper, "config": f"{case.paper}/configs/{case.config}",
           "per_gpu_batch": b, "gpus": world, "unit": case.unit,
           "params_M": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
           "step_ms": round(1e3 * per_step, 2),
           "samples_per_s": round(b * world / per_step, 1) if per_step > 0 else None,
           "peak_mem_GiB": round(torch.cuda.max_memory_allocated(dev) / 2 ** 30, 2) if dev.type == "cuda" else None,
           "loss_finite": bool(torch.isfinite(loss_values).all())}
    if flops is not None:
        row["step_TFLOP"] = round(flops / 1e12, 3)
        row["achieved_TFLOPs"] = round(flops / per_step / 1e12, 1) if per_step > 0 else None
    del model, wrapped, optim
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    return row


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="make gpu-check", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", default="", help="comma-separated case names (default: all): "
                   + ", ".join(c.name for c in CASES))
    p.add_argument("--steps", type=int, default=10, help="timed steps per case (default 10)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (default 3)")
    p.add_argument("--batch", type=int, default=0, help="per-GPU batch (default: the config's <gpus>xb<batch>)")
    p.add_argument("--amp", choices=("bf16", "off"), default="bf16")
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda",
                   help="cpu: run the cases on the CPU (a check of the code, not a measurement)")
    p.add_argument("--gpus", type=int, default=0, help="processes/GPUs (default: every visible GPU)")
    p.add_argument("--out", default="runs/gpu_check", help="folder for gpu_check.json and gpu_check.md")
    args = p.parse_args(argv)
    names = [c.name for c in CASES]
    for n in filter(None, args.only.split(",")):
        if n not in names:
            p.error(f"--only: unknown case '{n}' (one of {', '.join(names)})")
    return args


def markdown(rows: list[dict], header: dict) -> str:
    lines = [f"GPU: {header['gpu']} x {header['gpus']}; torch {header['torch']}, CUDA {header['cuda']}; "
             f"bf16 matmul {header.get('matmul_TFLOPs', 'n/a')} TFLOP/s measured, "
             f"{header.get('datasheet_TFLOPs') or 'n/a'} datasheet; {header['steps']} timed steps after "
             f"{header['warmup']} warm-up; amp {header['amp']}.", "",
             "| case | config | per-GPU batch | params (M) | step (ms) | samples/s | peak mem (GiB) | MFU |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['case']} | {r['config']} | failed: {r['error']} | | | | | |")
            continue
        mfu = r.get("MFU_datasheet")
        mfu_s = "" if mfu is None else f"{100 * mfu:.1f} % ({100 * r['MFU_measured']:.1f} % of measured)"
        lines.append(f"| {r['case']} | {r['config']} | {r['per_gpu_batch']} | {r['params_M']} | {r['step_ms']} | "
                     f"{r['samples_per_s']} {r['unit']} | {r['peak_mem_GiB']} | {mfu_s} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print(f"gpu-check: no CUDA device visible (torch {torch.__version__}, CUDA build: "
              f"{torch.version.cuda or 'none'}); nothing to measure")
        return 0
    n_gpus = args.gpus or (torch.cuda.device_count() if args.device == "cuda" else 1)
    if args.device == "cuda" and "LOCAL_RANK" not in os.environ:
        # one process per GPU through torchrun (DDP, nccl), also on a single GPU
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n_gpus}",
               __file__, *(argv if argv is not None else sys.argv[1:])]
        os.execv(sys.executable, cmd)
    world, rank = 1, 0
    if args.device == "cuda":
        torch.distributed.init_process_group("nccl")
        world, rank = torch.distributed.get_world_size(), torch.distributed.get_rank()
        dev = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(dev)
    else:
        dev = torch.device("cpu")
    header = {"gpu": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu", "gpus": world,
              "torch": torch.__version__, "cuda": torch.version.cuda, "steps": args.steps, "warmup": args.warmup,
              "amp": args.amp}
    if dev.type == "cuda":
        header["matmul_TFLOPs"] = round(measured_matmul_peak(dev), 1)
        header["datasheet_TFLOPs"] = datasheet_peak(header["gpu"])
    wanted = set(filter(None, args.only.split(",")))
    rows = []
    for case in CASES:
        if wanted and case.name not in wanted:
            continue
        try:
            row = run_case(case, args, dev, world)
        except Exception as e:  # one case's failure must not hide the others' figures
            row = {"case": case.name, "config": f"{case.paper}/configs/{case.config}",
                   "error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300]}
            if dev.type == "cuda":
                torch.cuda.empty_cache()
        if "achieved_TFLOPs" in row and row["achieved_TFLOPs"] and "matmul_TFLOPs" in header:
            row["MFU_measured"] = round(row["achieved_TFLOPs"] / header["matmul_TFLOPs"], 4)
            peak = header.get("datasheet_TFLOPs")
            row["MFU_datasheet"] = round(row["achieved_TFLOPs"] / peak, 4) if peak else None
        if rank == 0:
            print(json.dumps(row), flush=True)
        rows.append(row)
    if rank == 0:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "gpu_check.json").write_text(json.dumps({"header": header, "rows": rows}, indent=1) + "\n")
        text = markdown(rows, header)
        (out / "gpu_check.md").write_text(text)
        print("\n" + text)
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
