"""Stages 1-2 on PASCAL VOC 2012 (``pascalvoc_crop.py`` + ``pascalvoc_generate_pseudo_label.py``).

    python -m transfgu.generate --data-root /data/VOC2012 --dino /w/dino_deitsmall8_pretrain.pth --out /data/fgu_voc

1. every train image squashed to 2R (640), fg = CLS attention > its mean, windows s = .6 .5 .4 .3 (70 on the
   80x80 grid), a window is a crop when > 50 % fg (VOC keeps fg crops only), crop -> R x R -> CLS token;
2. k-means with K = 20 on the bank (official: faiss, 100 iterations; here torch k-means++);
3. CAM per class on R x R inputs in batches of 8 -> ``<out>/<id>.pt`` (20, 40, 40) float16, and
   ``<out>/centroids.pt``.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F

from .data import VOCSegmentation
from .model import box_anchors, cls_attention, create_encoder, encode, fg_bg_crops, kmeans, load_dino_encoder
from .pipeline import generate_cams


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m transfgu.generate", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-root", required=True)
    ap.add_argument("--dino", required=True, help="local DINO ViT-S/8 weights (dino_deitsmall8_pretrain.pth)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--size", type=int, default=320)
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--limit", type=int, default=0, help="only the first N images (debugging)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    dev = torch.device(args.device)
    vit = create_encoder()  # stored 28x28 grid, resampled per forward as DINO
    load_dino_encoder(vit, args.dino)
    vit.requires_grad_(False).to(dev).eval()
    ds = VOCSegmentation(args.data_root, "train", args.size)
    n = min(len(ds), args.limit) if args.limit else len(ds)
    grid = 2 * args.size // 8
    anchors = box_anchors(grid, grid, (0.6, 0.5, 0.4, 0.3)).to(dev)
    bank = []
    with torch.no_grad():
        for i in range(n):
            img = F.interpolate(ds[i][0][None].to(dev), scale_factor=2, mode="bilinear", align_corners=False)
            _, _, attn = encode(vit, img)
            a = cls_attention(attn, grid, grid)[0]
            crops, _ = fg_bg_crops(img[0], a > a.mean(), anchors, (args.size, args.size), split=True, th_bg=2.0)
            for j in range(0, len(crops), 32):
                bank.append(encode(vit, crops[j:j + 32])[0].cpu())
            if (i + 1) % 100 == 0:
                print(f"crops: {i + 1}/{n} images, {sum(len(b) for b in bank)} fg crops", flush=True)
    mu = kmeans(torch.cat(bank), args.k, iters=100, restarts=1, seed=1).to(dev)
    torch.save(mu.cpu(), out / "centroids.pt")
    for i in range(0, n, 8):
        imgs = torch.stack([ds[j][0] for j in range(i, min(n, i + 8))]).to(dev)
        cams = generate_cams(vit, imgs, mu, 8, batch=8)
        for j, cam in zip(range(i, i + len(imgs)), cams):
            torch.save(cam.half().cpu(), out / f"{ds.ids[j]}.pt")
    print(f"wrote {n} CAM files and centroids.pt to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
