"""Evaluate a trained BP-Triplet checkpoint: target top-1 / mean-class accuracy and the A-distance.

    python -m bp_triplet.evaluate --config <run>/config.yaml --checkpoint <run>/last.pt [--out eval.json]

Protocols: top-1 over all target test images with a single centre crop (thuml/CDAN reports 10-crop and
the best test accuracy seen during training, thuml/CDAN#4; we report the checkpoint given, by default
the last one). VisDA's usual number is ``target_mean_class`` (mean of per-class recalls).

Proxy A-distance (Ben-David et al. 2007; the paper's analysis on A->W and W->D compares it across
methods): ``d_A = 2 (1 - 2 eps)`` with ``eps`` the held-out error of a logistic-regression domain
classifier on the bottleneck features (50/50 split of the source+target features, balanced domains).

Joint error of the ideal hypothesis (lambda* of Ben-David et al. 2010's bound
``eps_T(h) <= eps_S(h) + d_H(S, T) / 2 + lambda*``, ``lambda* = min_h eps_S(h) + eps_T(h)``; the abstract says
BP-Triplet keeps it low): a multinomial logistic regression trained on the bottleneck features of source *and*
target with their true labels (labels the method never sees), scored on a held-out half of each domain;
``lambda = eps_S + eps_T`` in percent. High when the features mix classes across domains.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from shared.metrics.classification import mean_class_accuracy, top1_accuracy


@torch.no_grad()
def extract_features(model: nn.Module, dataset: Dataset, device: torch.device | str = "cpu",
                     batch_size: int = 256) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bottleneck features ``(N, d)``, logits ``(N, C)`` and labels ``(N,)`` in dataset order (eval mode)."""
    was = model.training
    model.eval()
    feats, logits, labels = [], [], []
    for x, y, *_ in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        out = model(x.to(device))
        feats.append(out["features"].float().cpu())
        logits.append(out["logits"].float().cpu())
        labels.append(torch.as_tensor(y))
    model.train(was)
    return torch.cat(feats).numpy(), torch.cat(logits).numpy(), torch.cat(labels).numpy()


def proxy_a_distance(source_features: np.ndarray, target_features: np.ndarray, seed: int = 0,
                     max_per_domain: int = 2000) -> float:
    """``2 (1 - 2 eps)`` from a logistic-regression domain classifier; in [-2, 2], 0 = indistinguishable.

    Both domains are subsampled to the same size (at most ``max_per_domain``) so chance is 50%;
    features are standardised; ``eps`` is measured on the held-out half.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(seed)
    n = min(len(source_features), len(target_features), max_per_domain)
    s = source_features[rng.permutation(len(source_features))[:n]]
    t = target_features[rng.permutation(len(target_features))[:n]]
    x = np.concatenate([s, t]).astype(np.float64)
    y = np.concatenate([np.ones(n), np.zeros(n)])
    order = rng.permutation(2 * n)
    x, y = x[order], y[order]
    half = n  # train on the first half, test on the second
    scaler = StandardScaler().fit(x[:half])
    clf = LogisticRegression(max_iter=1000, C=1.0).fit(scaler.transform(x[:half]), y[:half])
    eps = 1.0 - clf.score(scaler.transform(x[half:]), y[half:])
    return float(2.0 * (1.0 - 2.0 * eps))


def ideal_joint_error(source_features: np.ndarray, source_labels: np.ndarray, target_features: np.ndarray,
                      target_labels: np.ndarray, seed: int = 0, max_per_domain: int = 2000) -> dict[str, float]:
    """``lambda_star = eps_S + eps_T`` (%) of one classifier fitted on both labelled domains (features standardised
    on the fitting half), with ``eps_source`` and ``eps_target`` on the held-out halves; both domains
    subsampled to the same size (at most ``max_per_domain``) so neither dominates the fit."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(seed)
    n = min(len(source_features), len(target_features), max_per_domain)
    halves = []
    for f, y in ((source_features, source_labels), (target_features, target_labels)):
        idx = rng.permutation(len(f))[:n]
        halves.append(((f[idx[: n // 2]], y[idx[: n // 2]]), (f[idx[n // 2:]], y[idx[n // 2:]])))
    x_fit = np.concatenate([h[0][0] for h in halves]).astype(np.float64)
    y_fit = np.concatenate([h[0][1] for h in halves])
    scaler = StandardScaler().fit(x_fit)
    clf = LogisticRegression(max_iter=2000, C=1.0).fit(scaler.transform(x_fit), y_fit)
    eps = [100.0 * (1.0 - clf.score(scaler.transform(h[1][0].astype(np.float64)), h[1][1])) for h in halves]
    return {"lambda_star": eps[0] + eps[1], "eps_source": eps[0], "eps_target": eps[1]}


def evaluate_model(model: nn.Module, domains, device: torch.device | str = "cpu", seed: int = 0,
                   batch_size: int = 256) -> dict[str, float]:
    """``target_top1``, ``target_mean_class`` (%, on the target test set), ``a_distance`` and the ideal joint
    error ``lambda_star`` (with ``eps_source``/``eps_target``, on the target test features)."""
    ft, logits, yt = extract_features(model, domains.target_test, device, batch_size)
    fs, _, ys = extract_features(model, domains.source, device, batch_size)
    ft_train = ft if domains.target_train_plain is domains.target_test else \
        extract_features(model, domains.target_train_plain, device, batch_size)[0]
    return {"target_top1": top1_accuracy(logits, yt),
            "target_mean_class": mean_class_accuracy(logits, yt, domains.num_classes)[0],
            "a_distance": proxy_a_distance(fs, ft_train, seed)} | ideal_joint_error(fs, ys, ft, yt, seed)


def main(argv: list[str] | None = None) -> int:
    from shared.backbones import load_weights
    from shared.cli import evaluate_parser, finish_evaluation, parse_evaluate_args
    from shared.config import load_config
    from shared.errors import cli_errors

    from .train import BPTripletConfig, BPTripletTask

    prog = "python -m bp_triplet.evaluate"
    p = evaluate_parser(prog, __doc__, "last.pt / best.pt of a run, or a bare state dict")
    args = parse_evaluate_args(p, argv)
    try:
        with cli_errors(prog):
            cfg = load_config(args.config, BPTripletConfig, args.overrides)
            task = BPTripletTask(cfg)
            model = task.build_model()
            load_weights(model, args.checkpoint)  # strict: a mismatch is one line naming the file and the keys
            device = "cuda" if torch.cuda.is_available() and cfg.engine.device != "cpu" else "cpu"
            res = evaluate_model(model.to(device), task.domains, device, cfg.engine.seed, cfg.data.eval_batch_size)
            finish_evaluation(res, args.out)
    except SystemExit as e:  # cli_errors printed the one line
        return int(e.code or 0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
