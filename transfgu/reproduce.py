"""``make reproduce PAPER=transfgu``: the TransFGU pipeline vs bottom-up k-means on embedded textured scenes.

Per seed k (one single-thread process each, ``--jobs`` at a time; train and val scenes are drawn from k): load the
shipped tiny DINO ViT/8 ``transfgu/encoders/dino_vit8_seed<k>.pth`` (k mod 3 if k is not shipped; ``make pretrain
PAPER=transfgu`` regenerates it; this command never pre-trains; sha256-checked, loaded strictly through
``load_dino_encoder`` as a user's ``dino_deitsmall8_pretrain.pth``), then, with that encoder frozen,
  (a) ``cam_pseudo_labels``: concept discovery (fg/bg crops -> k-means, 4 things + 3 stuff) and CAM argmax;
  (b) ``transfgu``: the Segmenter decoder trained on the CAM pseudo labels with bootstrapping (last epoch;
      the official best-on-val epoch is reported beside it);
  (c) ``kmeans_patch_tokens``: k-means (K = 7) on L2-normalised last-layer patch tokens (the baseline);
  plus ``cam_wrong_sign`` (CAM with +g_c instead of -g_c, an ablation) and ``kmeans_random_vit`` (the baseline
  on the untrained ViT: what DINO adds). Whole-val-set Hungarian mIoU, 7 classes, 96 px scenes.

With ``--data ROOT`` it launches ``transfgu/scripts/<benchmark>.sh`` instead.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from shared.cli import launch_script, parse_seeds, refuse_embedded_overrides, reproduce_dirs, reproduce_parser
from shared.jobs import run_jobs
from shared.pretrain import pick_encoder, read_manifest
from shared.results import tuning_line, write_summary

from .data import textured_scenes
from .model import create_encoder, load_dino_encoder
from .pipeline import build_concepts, decoder_logits, generate_cams, kmeans_baseline, score_maps, train_decoder

HERE = Path(__file__).resolve().parent
ENCODERS = HERE / "encoders"
N_SHIPPED = 3
TRAIN_SEED, VAL_SEED = 1000, 2000  # scene draws of seed k: TRAIN_SEED + k, VAL_SEED + k (pre-training: 50_000 + k)
FULL = {"n_train": 500, "n_val": 150, "n_crop": 120, "size": 96, "epochs": 8, "dec_batch": 32}
QUICK = {"n_train": 40, "n_val": 16, "n_crop": 8, "size": 64, "epochs": 3, "dec_batch": 8}
ENCODER = {"embed_dim": 64, "depth": 4, "num_heads": 4, "patch_size": 8, "pretrain_size": 64}


def encoder_file(seed: int, encoders: Path = ENCODERS) -> Path:
    """Fine-tuning seed k starts from pre-training seed k: ``dino_vit8_seed<k>.pth`` when the manifest lists it,
    else ``dino_vit8_seed<k mod 3>.pth`` (so seeds 3-5 re-use encoders 0-2); sha256-checked."""
    return pick_encoder(encoders, "dino_vit8", seed, N_SHIPPED)


def load_encoder(seed: int, encoders: Path = ENCODERS):
    """The shipped DINO encoder of pre-training seed ``seed`` (``seed mod 3`` if not shipped), frozen (strict
    load, sha256 checked)."""
    vit = create_encoder(**ENCODER)
    load_dino_encoder(vit, encoder_file(seed, encoders))
    return vit.eval().requires_grad_(False)


def check_encoders(seeds: list[int], encoders: Path = ENCODERS) -> dict[int, Path]:
    """Before any work: every seed's encoder is listed, matches its sha256 and loads strictly (a missing folder,
    a missing, modified or corrupt file is one line naming it, not an error minutes into the run)."""
    encoders = Path(encoders)
    if not encoders.is_dir():
        raise FileNotFoundError(f"{encoders}: no such encoder folder (--encoders; the shipped one is {ENCODERS}, "
                                "make pretrain PAPER=transfgu regenerates it)")
    files = {s: encoder_file(s, encoders) for s in seeds}
    for path in sorted(set(files.values())):
        load_dino_encoder(create_encoder(**ENCODER), path)
    return files


METHODS = ("transfgu", "cam_pseudo_labels", "kmeans_patch_tokens", "cam_wrong_sign", "kmeans_random_vit")
# How each row's settings were chosen (issue 14: "log how many settings each row tried"). No downstream setting
# (scene sizes, crop bank, k-means, CAM batch, decoder size / lr / epochs / bootstrapping) was searched: each row
# ran one setting, the FULL sizes above and the defaults of pipeline.py, committed before any reported run. The
# only search was over the shared encoder's pre-training recipe (encoders/manifest.json "attempts", validation
# pool draw 50_100 and validation scenes 1100 / 2100, never a reported seed): 4 of those recipes (e-h) were
# scored with all rows at once, none adopted; so no row was tuned alone. (The sizes in FULL are those of the
# first commit, 142aa25; only the in-reproduce DINO's steps, since removed, changed.) Written into summary.json as
# ``tuning_trials``; change it when a row is tuned.
_SHARED_SEARCH = ("downstream: the one committed setting, nothing searched; shared encoder (encoders/manifest.json "
                  "attempts): the earlier in-reproduce DINO (dino_lite, 120 then 200 steps) and 7 recipes on the "
                  "validation pool draw 50_100 (a-c, e-h); e-h were scored with every row at once on validation "
                  "scenes 1100/2100 and none was adopted; the kept recipe b was chosen on teacher entropy alone")
TUNING_TRIALS = {m: {"settings": 1, "validation_runs": 0, "shared_encoder_recipe_runs": 4, "how": _SHARED_SEARCH}
                 for m in METHODS}


def run_seed(seed: int, quick: bool, encoders: Path = ENCODERS) -> dict:
    """All arms of one seed; returns mIoU / acc per arm, the decoder history and timings."""
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    p = QUICK if quick else FULL
    t0 = time.time()

    def log(m: str) -> None:
        print(f"  [seed {seed}] {m.strip()}", flush=True)

    train = textured_scenes(p["n_train"], TRAIN_SEED + seed, p["size"])
    val = textured_scenes(p["n_val"], VAL_SEED + seed, p["size"])
    patch, k = ENCODER["patch_size"], train.num_classes
    res = {"seed": seed, "timing": {}}
    rand = create_encoder(**ENCODER).eval().requires_grad_(False)
    res["kmeans_random_vit"] = score_maps(kmeans_baseline(rand, train.images, val.images, k, patch, seed), val.labels,
                                          k)
    vit = load_encoder(seed, encoders)
    path = encoder_file(seed, encoders)  # the pairing, recorded per seed: fine-tuning seed k <- pre-training seed k
    res["encoder"] = {"file": path.name, "sha256": read_manifest(path.parent / "manifest.json")["encoders"][
        path.name]["sha256"]}
    res["kmeans_patch_tokens"] = score_maps(kmeans_baseline(vit, train.images, val.images, k, patch, seed),
                                            val.labels, k)
    mu, res["crops"] = build_concepts(vit, train.images[:p["n_crop"]], patch, train.n_things, train.n_stuff,
                                      seed=seed)
    res["timing"]["concepts"] = time.time() - t0
    cams = generate_cams(vit, train.images, mu, patch)
    res["cam_pseudo_labels"] = score_maps(generate_cams(vit, val.images, mu, patch), val.labels, k)
    res["cam_wrong_sign"] = score_maps(generate_cams(vit, val.images, mu, patch, sign=1.0), val.labels, k)
    res["timing"]["cams"] = time.time() - t0

    def evaluate(dec):
        return score_maps(decoder_logits(vit, dec, val.images, patch), val.labels, k)

    dec, res["history"] = train_decoder(vit, train.images, cams, k, patch, epochs=p["epochs"], batch=p["dec_batch"],
                                        crop_out=p["size"], seed=seed, evaluate=evaluate, log=log,
                                        dec_kwargs={"d_model": 64, "n_layers": 1, "n_heads": 4, "mlp_dim": 256})
    res["transfgu"] = {"mIoU": res["history"][-1]["mIoU"], "acc": res["history"][-1]["acc"]}
    best = max(res["history"], key=lambda r: r["mIoU"] + r["acc"])
    res["transfgu_best_on_val"] = {"mIoU": best["mIoU"], "acc": best["acc"], "epoch": best["epoch"]}
    res["timing"]["total"] = time.time() - t0
    log("done: " + ", ".join(f"{m} {res[m]['mIoU']:.1f}" for m in METHODS) + f" ({res['timing']['total']:.0f} s)")
    return res


def main(argv: list[str] | None = None) -> int:
    ap = reproduce_parser("transfgu", __doc__.split("\n")[0], jobs=True)
    ap.add_argument("--benchmark", default="voc", choices=["voc", "coco", "cityscapes", "lip"],
                    help="with --data: which benchmark script to launch")
    ap.add_argument("--encoders", default=str(ENCODERS),
                    help="folder of the DINO encoders and their manifest.json (default: the shipped ones)")
    args = ap.parse_args(argv)
    if args.data:
        return launch_script(HERE / "scripts" / f"{args.benchmark}.sh", args.data, args.gpus, overrides=args.overrides)
    refuse_embedded_overrides("transfgu", args)
    seeds = parse_seeds(args.seeds)
    out_dir, _ = reproduce_dirs("transfgu", args)
    start = time.time()
    check_encoders(seeds, Path(args.encoders))
    print(f"transfgu embedded reproduction: seeds {seeds} -> {out_dir}", flush=True)
    done = run_jobs(run_seed, [(s, (s, args.quick, Path(args.encoders))) for s in seeds], workers=max(1, args.jobs))
    res = [done[s] for s in seeds]
    rows = {m: [r[m]["mIoU"] for r in res] for m in METHODS}
    acc = {m: float(np.mean([r[m]["acc"] for r in res])) for m in METHODS}
    best = [r["transfgu_best_on_val"] for r in res]
    crops = res[0]["crops"]
    notes = (
        "Pixel accuracy (seed mean, %): " + ", ".join(f"{m} {v:.1f}" for m, v in acc.items()) + ".\n\n"
        "transfgu row = last decoder epoch; the official code keeps the best epoch by acc + mIoU *on val*: "
        f"{np.mean([b['mIoU'] for b in best]):.2f} mIoU / {np.mean([b['acc'] for b in best]):.2f} acc "
        f"(epochs {[b['epoch'] for b in best]}).\n\n"
        f"Crop bank (seed {seeds[0]}): {crops['fg_crops']} fg / {crops['bg_crops']} bg crops from "
        f"{crops['windows_per_image']} windows per image.\n\n"
        "transfgu - kmeans_patch_tokens = "
        f"{np.mean(rows['transfgu']) - np.mean(rows['kmeans_patch_tokens']):+.2f} mIoU (seed mean).\n\n"
        "Encoders (fine-tuning seed k <- pre-training seed k, k mod 3 when not shipped): "
        + ", ".join(f"seed {r['seed']} {r['encoder']['file']}" for r in res) + ".\n\n"
        + tuning_line(TUNING_TRIALS) + " Every row is scored at its end: the decoder's last epoch, the others have "
        "no epochs.")
    title = "val mIoU over decoder epochs"
    curves = {title: {f"seed {r['seed']}": [h["mIoU"] for h in r["history"]] for r in res}}
    curves_x = {title: [h["epoch"] for h in res[0]["history"]]}
    write_summary("transfgu", "textured scenes (3 stuff + 4 thing textures, 96 px), tiny DINO ViT/8",
                  "val mIoU (Hungarian, whole set)", rows, seeds, time.time() - start,
                  {"sizes": QUICK if args.quick else FULL, "scene_seeds": f"train {TRAIN_SEED}+k, val {VAL_SEED}+k",
                   "encoders": args.encoders, "encoder": ENCODER, "quick": args.quick},
                  out_dir=out_dir, notes=notes, curves=curves, curves_x=curves_x, curves_xlabel="epoch",
                  extra={"pixel_accuracy": acc, "transfgu_best_on_val": best, "tuning_trials": TUNING_TRIALS,
                         "encoders_per_seed": {str(r["seed"]): r["encoder"] for r in res},
                         "per_seed": [{k: v for k, v in r.items()} for r in res]})
    print((out_dir / "summary.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
