"""Inference-only probes of MHFormer's three hypotheses on the embedded reproduction's checkpoints.

    python -m mhformer.diagnose --seeds 0,1,2,3,4,5        # after make reproduce PAPER=mhformer [SEEDS=...]

For every seed it reads ``runs/mhformer-reproduce/{mhformer,single_hypothesis}_s<seed>/last.pt`` and prints
one JSON line: P1 MPJPE (flip TTA) per action for both rows, how far each cascaded MHG encoder moves its
hypothesis (``||X_2 - X_1|| / ||X_1||``, ``||X_3 - X_2|| / ||X_2||``, mean over test windows), and the
MPJPE when one hypothesis is fed to all three streams (``all_X1`` / ``all_X2`` / ``all_X3``): if the three
had collapsed into one, that would cost nothing. The README's MHFormer diagnosis quotes these numbers.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from .model import MHFormer
from .reproduce import METHODS, data_for
from .scoring import evaluate_windows

HERE = Path(__file__).resolve().parent


def forward_with_hypotheses(model: MHFormer, x: torch.Tensor, pick: tuple[int, int, int]) -> torch.Tensor:
    """``model(x)`` with stream m fed MHG hypothesis ``X_{pick[m] + 1}``; ``pick=(0, 1, 2)`` is the plain
    forward. (B, N, J, 2) -> (B, N, J, 3)."""
    return model(x, pick)


def hypothesis_steps(model: MHFormer, x: torch.Tensor) -> tuple[float, float]:
    """Mean relative change made by MHG encoders 2 and 3: ``||X_2 - X_1|| / ||X_1||``, ``||X_3 - X_2|| / ||X_2||``."""
    x1, x2, x3 = model.hypotheses(x)
    rel = lambda a, b: float(((b - a).norm(dim=(1, 2)) / a.norm(dim=(1, 2))).mean())  # noqa: E731
    return rel(x1, x2), rel(x2, x3)


class _Picked(torch.nn.Module):
    def __init__(self, model: MHFormer, pick: tuple[int, int, int]):
        super().__init__()
        self.model, self.pick = model, pick

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return forward_with_hypotheses(self.model, x, self.pick)


def probe_seed(seed: int, runs: Path) -> dict:
    from shared.config import load_config

    from .train import MHFormerConfig, MHFormerTask

    root = data_for(seed, quick=False)
    out: dict = {"seed": seed}
    for row in ("mhformer", "single_hypothesis"):
        ckpt = runs / f"{row}_s{seed}" / "last.pt"
        if not ckpt.is_file():
            raise SystemExit(f"{ckpt}: no checkpoint (run make reproduce PAPER=mhformer SEEDS={seed} first)")
        cfg = load_config(HERE / "configs" / METHODS[row], MHFormerConfig, [f"data.root={root}", "engine.device=cpu"])
        task = MHFormerTask(cfg)
        model = task.build_model()
        model.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=True)["model"])
        model.eval()
        win = task.test_windows()
        m = evaluate_windows(model, win, "h36m", 256, True, "cpu")
        out[row] = {"mpjpe": round(m["mpjpe"], 2), "per_action": {a: round(v, 2) for a, v in
                                                                   m["per_action"]["mpjpe"].items()}}
        if row == "mhformer":
            x = torch.stack([win[i][0] for i in range(0, len(win), max(1, len(win) // 512))])
            with torch.no_grad():
                out["mhg_step_12"], out["mhg_step_23"] = (round(v, 3) for v in hypothesis_steps(model, x))
            for k in range(3):
                out[f"all_X{k + 1}"] = round(evaluate_windows(_Picked(model, (k, k, k)), win, "h36m", 256, True,
                                                              "cpu")["mpjpe"], 2)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mhformer.diagnose", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds whose checkpoints to probe")
    p.add_argument("--runs", default="runs/mhformer-reproduce", help="the reproduction's run folders")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    for s in (int(v) for v in args.seeds.split(",") if v.strip()):
        print(json.dumps(probe_seed(s, Path(args.runs))), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
