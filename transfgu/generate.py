"""Stages 1-2 (``<ds>_crop.py`` + ``<ds>_generate_pseudo_label.py``) for VOC, COCO-Stuff, Cityscapes and LIP.

    python -m transfgu.generate --dataset coco --classes 27 --data-root /data/MSCOCO \\
        --dino /w/dino_deitsmall8_pretrain.pth --out /data/fgu_coco27

1. every train image squashed to 2R (:func:`transfgu.data.input_size` of 2R: COCO / VOC 640^2, Cityscapes
   640x1280, LIP 1280x640; COCO with cv2 nearest, the others bilinear); fg = CLS attention > its mean; square
   windows (VOC s = .6 .5 .4 .3, the others .5 .4 .3 .2); VOC keeps windows > 50 % fg, COCO splits them into fg
   (> 50 %) and bg (> 80 % bg) banks, Cityscapes / LIP keep every window; crop -> R x R -> CLS token;
2. k-means: COCO fg bank -> n_things, bg bank -> n_stuff (27: 12 + 15, 171: 80 + 91); VOC 20; Cityscapes 27;
   LIP 5 / 16 / 19. Official: faiss (COCO, VOC; here torch k-means++, 100 iterations) and sklearn
   ``MiniBatchKMeans(max_iter=100, random_state=0)`` (Cityscapes, LIP; the same here);
3. CAM per class on the R-sized inputs in batches of 8 (COCO, VOC) or 2 (Cityscapes, LIP) ->
   ``<out>/<id>.pt`` (C, h, w) float16, things then stuff, and ``<out>/centroids.pt``.
COCO-80 trains on the 80 thing CAMs of the COCO-Stuff-171 run (official ``coco_trainval.py``).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from .data import build_dataset
from .model import box_anchors, cls_attention, create_encoder, encode, fg_bg_crops, kmeans, load_dino_encoder
from .pipeline import generate_cams

# crop windows, crop selection (fg only / fg + bg banks / every window), CAM batch N, k-means kind
RECIPES = {
    "voc": {"scales": (0.6, 0.5, 0.4, 0.3), "crops": "fg", "cam_batch": 8, "kmeans": "torch"},
    "coco": {"scales": (0.5, 0.4, 0.3, 0.2), "crops": "fgbg", "cam_batch": 8, "kmeans": "torch"},
    "cityscapes": {"scales": (0.5, 0.4, 0.3, 0.2), "crops": "all", "cam_batch": 2, "kmeans": "minibatch"},
    "lip": {"scales": (0.5, 0.4, 0.3, 0.2), "crops": "all", "cam_batch": 2, "kmeans": "minibatch"},
}
COCO_THINGS_STUFF = {27: (12, 15), 171: (80, 91)}


def cluster(bank: torch.Tensor, k: int, kind: str) -> torch.Tensor:
    """``(k, D)`` centres of ``bank`` ``(N, D)``: torch k-means (faiss stand-in) or sklearn MiniBatchKMeans."""
    if len(bank) < k:
        raise RuntimeError(f"only {len(bank)} crops for k-means with k = {k}")
    if kind == "minibatch":
        from sklearn.cluster import MiniBatchKMeans

        km = MiniBatchKMeans(n_clusters=k, max_iter=100, random_state=0).fit(bank.float().numpy())
        return torch.from_numpy(km.cluster_centers_).float()
    return kmeans(bank.float(), k, iters=100, restarts=1, seed=1)


def cluster_sizes(dataset: str, classes: int) -> tuple[int, int]:
    """``(n_things, n_stuff)`` clusters of the crop stage."""
    if dataset == "coco":
        if classes not in COCO_THINGS_STUFF:
            raise ValueError(f"COCO pseudo labels are generated for 27 or 171 classes (COCO-80 uses 171's), "
                             f"got {classes}")
        return COCO_THINGS_STUFF[classes]
    return classes, 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m transfgu.generate", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="voc", choices=sorted(RECIPES))
    ap.add_argument("--classes", type=int, default=20, help="VOC 20, COCO 27/171, Cityscapes 27, LIP 5/16/19")
    ap.add_argument("--data-root", required=True)
    ap.add_argument("--dino", required=True, help="local DINO ViT-S/8 weights (dino_deitsmall8_pretrain.pth)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--size", type=int, default=320, help="R (dataset.resize)")
    ap.add_argument("--curated", default="", help="COCO: optional curated_train.txt")
    ap.add_argument("--bank-per-image", type=int, default=0,
                    help="keep at most N random crops per image in the bank (spec pitfall 9; 0 = all, official)")
    ap.add_argument("--limit", type=int, default=0, help="only the first N images (debugging)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args(argv)
    recipe = RECIPES[args.dataset]
    n_things, n_stuff = cluster_sizes(args.dataset, args.classes)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    dev = torch.device(args.device)
    vit = create_encoder()  # stored 28x28 grid, resampled per forward as DINO
    load_dino_encoder(vit, args.dino)
    vit.requires_grad_(False).to(dev).eval()
    big = build_dataset(args.dataset, args.data_root, "train", args.classes, 2 * args.size, args.curated)
    if args.dataset == "coco":
        big.image_mode = "nearest"
    ds = build_dataset(args.dataset, args.data_root, "train", args.classes, args.size, args.curated)
    n = min(len(ds), args.limit) if args.limit else len(ds)
    g = torch.Generator().manual_seed(1)
    banks: dict[str, list[torch.Tensor]] = {"fg": [], "bg": []}
    anchors = None
    with torch.no_grad():
        for i in range(n):
            img = big[i][0][None].to(dev)
            gh, gw = img.shape[-2] // 8, img.shape[-1] // 8
            if anchors is None:
                anchors = box_anchors(gh, gw, recipe["scales"]).to(dev)
            _, _, attn = encode(vit, img)
            a = cls_attention(attn, gh, gw)[0]
            th_bg = 0.8 if recipe["crops"] == "fgbg" else 2.0  # > 1: VOC keeps no bg crops
            fg, bg = fg_bg_crops(img[0], a > a.mean(), anchors, (args.size, args.size),
                                 th_bg=th_bg, split=recipe["crops"] != "all")
            for name, crops in (("fg", fg), ("bg", bg)):
                if args.bank_per_image and len(crops) > args.bank_per_image:
                    crops = crops[torch.randperm(len(crops), generator=g)[:args.bank_per_image].to(dev)]
                for j in range(0, len(crops), 32):
                    banks[name].append(encode(vit, crops[j:j + 32])[0].half().cpu())
            if (i + 1) % 100 == 0:
                print(f"crops: {i + 1}/{n} images, {sum(len(b) for b in banks['fg'])} fg, "
                      f"{sum(len(b) for b in banks['bg'])} bg", flush=True)
    mu = cluster(torch.cat(banks["fg"]), n_things, recipe["kmeans"])
    if n_stuff:
        mu = torch.cat([mu, cluster(torch.cat(banks["bg"]), n_stuff, recipe["kmeans"])])
    torch.save(mu, out / "centroids.pt")
    mu = mu.to(dev)
    b = recipe["cam_batch"]
    for i in range(0, n, b):
        imgs = torch.stack([ds[j][0] for j in range(i, min(n, i + b))]).to(dev)
        cams = generate_cams(vit, imgs, mu, 8, batch=b)
        for j, cam in zip(range(i, i + len(imgs)), cams):
            torch.save(cam.half().cpu(), out / f"{ds.ids[j]}.pt")
    print(f"wrote {n} CAM files ({len(mu)} classes: {n_things} things + {n_stuff} stuff) and centroids.pt to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
