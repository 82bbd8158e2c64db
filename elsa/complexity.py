"""Parameters and FLOPs of ELSA-VOLO / ELSA-Swin beside timm's VOLO / Swin.

    python -m elsa.complexity                      # every ELSA-VOLO variant and its VOLO, ELSA-Swin-T/S/B
    python -m elsa.complexity --models elsa_volo_d5_512,volo_d5_512

FLOPs are counted with ``torch.utils.flop_counter.FlopCounterMode`` (fvcore is not installed), on the
``meta`` device (shapes only, nothing is computed), batch 1, at each model's own resolution, and reported
as GMACs (FlopCounterMode's FLOPs / 2, the convention of the ELSA, VOLO and Swin papers). It counts
matmuls and convolutions only. ELSA's aggregation is elementwise (built with ``impl="shift"`` here, so
none of it is counted by the mode); it is added by hand per ELSA block as ``C * H * W * k^2`` MACs for
``sum_j F_j v_{p+o_j}`` plus ``C * H * W * k^2`` for building ``F = M^lam A + gamma Bg`` when a ghost
term is present. VOLO's ``F.fold`` (a sum) is not counted, as in VOLO's own numbers.
"""
from __future__ import annotations

import argparse

import timm
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .model import ELSA
from .volo import VOLO_RESOLUTIONS

PAIRS = [(f"elsa_volo_{d}_{r}", f"volo_{d}_{r}") for d, rs in VOLO_RESOLUTIONS.items() for r in rs] + [
    ("elsa_swin_tiny", "swin_tiny_patch4_window7_224"), ("elsa_swin_small", "swin_small_patch4_window7_224"),
    ("elsa_swin_base", "swin_base_patch4_window7_224")]


def aggregation_macs(model: nn.Module, x: torch.Tensor) -> int:
    """Hand count of the elementwise ELSA aggregation MACs in one forward of ``x`` (see module doc)."""
    total = 0

    def hook(mod: ELSA, inp: tuple, _out: torch.Tensor) -> None:
        nonlocal total
        b, h, w, _ = inp[0].shape
        per = b * mod.dim_v * h * w * mod.kernel_size ** 2
        total += per * (2 if mod.ghost_head is not None else 1)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, ELSA)]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return total


def complexity(name: str) -> dict[str, float]:
    """``{params_m, gmacs_counted, gmacs_aggregation, gmacs, img}`` of a timm-registered model."""
    import elsa.volo  # noqa: F401  (registers the models)

    kw = {"impl": "shift"} if name.startswith("elsa_") else {}
    with torch.device("meta"):
        model = timm.create_model(name, **kw).eval()
        size = model.pretrained_cfg["input_size"]
        x = torch.empty(1, *size)
    params = sum(p.numel() for p in model.parameters())
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x)
    counted = counter.get_total_flops() / 2
    agg = aggregation_macs(model, x)
    return {"params_m": params / 1e6, "gmacs_counted": counted / 1e9, "gmacs_aggregation": agg / 1e9,
            "gmacs": (counted + agg) / 1e9, "img": size[-1]}


def main(argv: list[str] | None = None) -> list[str]:
    p = argparse.ArgumentParser(prog="python -m elsa.complexity", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="", help="comma-separated ELSA model names (default: all, each with "
                                                "its VOLO/Swin counterpart)")
    args = p.parse_args(argv)
    pairs = PAIRS
    if args.models:
        wanted = [m for m in args.models.split(",") if m]
        known = {a for a, _ in PAIRS} | {b for _, b in PAIRS}
        bad = [m for m in wanted if m not in known]
        if bad:
            raise SystemExit(f"--models: unknown {', '.join(bad)} (choose from {', '.join(sorted(known))})")
        pairs = [(a, b) for a, b in PAIRS if a in wanted or b in wanted]
    lines = ["| model | px | params (M) | GMACs (counted + ELSA aggregation by hand) | baseline | params (M) | GMACs |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for ours, base in pairs:
        a, b = complexity(ours), complexity(base)
        lines.append(f"| `{ours}` | {a['img']} | {a['params_m']:.2f} | {a['gmacs']:.2f} ({a['gmacs_counted']:.2f} + "
                     f"{a['gmacs_aggregation']:.2f}) | `{base}` | {b['params_m']:.2f} | {b['gmacs']:.2f} |")
        print(lines[-1] if len(lines) > 3 else "\n".join(lines), flush=True)
    return lines


if __name__ == "__main__":
    main()
