"""Lift your own 2D keypoint sequence to 3D with a trained MHFormer and plot it.

    python -m mhformer.demo --keypoints my_clip.npz --checkpoint model_4590.pth --frames 27 \\
        --width 1920 --height 1080 --out lifted.png

Input: ``(T, 17, 2)`` pixel coordinates in the Human3.6M-17 order (0 pelvis, 1-3 right leg, 4-6 left
leg, 7 spine, 8 thorax, 9 neck/nose, 10 head, 11-13 left arm, 14-16 right arm), as a ``.npz`` (key
``keypoints`` or its only array) or a ``.json`` (a list of T frames of 17 ``[x, y]``, or
``{"keypoints": ...}``). COCO-ordered detections must be converted first (the official demo does this in
``demo/lib/hrnet/lib/utils/coco_h36m.py``); an HRNet/COCO detector also differs from the CPN-H36M
detections the released models were trained on (official issue #64), so expect a domain gap.

Every frame is the centre of one N-frame window (edge-replicated at the ends), with flip TTA, as in
the evaluation. Writes ``<out>.png`` (a few frames in 3D) and ``<out>.npz`` (``poses_3d`` (T, 17, 3),
root-relative camera coordinates in metres).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from shared.data.skeleton import JOINTS_LEFT, JOINTS_RIGHT, PARENTS

from .data import PoseData, PoseSequence, PoseWindows, normalize_screen_coordinates
from .evaluate import predict_centre
from .model import MHFormer, load_official_checkpoint


def read_keypoints(path: Path) -> np.ndarray:
    """(T, 17, 2) float32 pixels from a .npz or .json file; one-line errors name the file."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: keypoint file not found")
    try:
        if path.suffix == ".json":
            obj = json.loads(path.read_text())
            arr = np.asarray(obj["keypoints"] if isinstance(obj, dict) else obj, np.float32)
        else:
            with np.load(path, allow_pickle=False) as z:
                key = "keypoints" if "keypoints" in z.files else (z.files[0] if len(z.files) == 1 else None)
                if key is None:
                    raise ValueError(f"no 'keypoints' array among {z.files}")
                arr = z[key].astype(np.float32)
    except (ValueError, KeyError, json.JSONDecodeError, OSError) as e:
        raise ValueError(f"{path}: cannot read keypoints ({e})") from None
    if arr.ndim == 4 and arr.shape[0] == 1:
        arr = arr[0]  # (1, T, 17, 2) as the official demo saves it
    if arr.ndim != 3 or arr.shape[1:] != (17, 2):
        raise ValueError(f"{path}: keypoints have shape {arr.shape}; expected (T, 17, 2) in the H36M-17 order")
    return arr


def lift(model: torch.nn.Module, keypoints: np.ndarray, width: int, height: int, frames: int) -> np.ndarray:
    """(T, 17, 2) pixels -> (T, 17, 3) metres, root-relative; one window per frame, flip TTA."""
    seq = PoseSequence("demo", "demo", 0, np.zeros((len(keypoints), 17, 3), np.float32),
                       normalize_screen_coordinates(keypoints, width, height))
    data = PoseData([seq], list(JOINTS_LEFT), list(JOINTS_RIGHT), list(JOINTS_LEFT), list(JOINTS_RIGHT))
    return predict_centre(model, PoseWindows(data, frames, out_all=False), batch_size=64)["pred"]


def plot(poses: np.ndarray, path: Path, n: int = 4) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    idx = np.linspace(0, len(poses) - 1, min(n, len(poses))).astype(int)
    fig = plt.figure(figsize=(3.2 * len(idx), 3.4))
    for k, t in enumerate(idx):
        ax = fig.add_subplot(1, len(idx), k + 1, projection="3d")
        p = poses[t] * [1, -1, -1]  # camera (x right, y down, z forward) -> plot with y up
        for j, parent in enumerate(PARENTS):
            if parent >= 0:
                c = "tab:red" if j in JOINTS_RIGHT else "tab:blue" if j in JOINTS_LEFT else "k"
                ax.plot(*[p[[j, parent], a] for a in (0, 2, 1)], color=c)
        ax.set_xlim(-1, 1), ax.set_ylim(-1, 1), ax.set_zlim(-1, 1)
        ax.set_title(f"frame {t}", fontsize=8)
        ax.view_init(elev=15, azim=-70)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mhformer.demo", description=__doc__.split("\n")[0])
    ap.add_argument("--keypoints", required=True, type=Path, help="(T, 17, 2) pixels, .npz or .json")
    ap.add_argument("--checkpoint", required=True, type=Path, help="released model_XXXX.pth (or one of yours)")
    ap.add_argument("--frames", type=int, default=27, help="N the checkpoint was trained with")
    ap.add_argument("--width", type=int, required=True, help="image width in pixels")
    ap.add_argument("--height", type=int, required=True, help="image height in pixels")
    ap.add_argument("--channel", type=int, default=512)
    ap.add_argument("--d-hid", type=int, default=1024)
    ap.add_argument("--out", type=Path, default=Path("lifted.png"))
    args = ap.parse_args(argv)
    try:
        kps = read_keypoints(args.keypoints)
        model = MHFormer(frames=args.frames, channel=args.channel, d_hid=args.d_hid)
        load_official_checkpoint(model, args.checkpoint)
        poses = lift(model.eval(), kps, args.width, args.height, args.frames)
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        print(f"mhformer.demo: error: {e}", file=sys.stderr)
        return 1
    np.savez(args.out.with_suffix(".npz"), poses_3d=poses)
    plot(poses, args.out.with_suffix(".png"))
    print(f"wrote {args.out.with_suffix('.png')} and {args.out.with_suffix('.npz')} ({len(poses)} frames)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
