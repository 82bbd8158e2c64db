"""TransReID-SSL USL/UDA (cluster contrast): Jaccard distance, DBSCAN outliers, memory, sampler, loaders, a run."""
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from shared.backbones import CheckpointMismatchError
from shared.config import load_config
from transreid_ssl.data import ReIDSplit
from transreid_ssl.model import ReIDModel, ReIDViT
from transreid_ssl.train import TransReIDSSLConfig, build_task
from transreid_ssl.usl import (
    ClusterMemory,
    MultiGallerySampler,
    USLModel,
    cluster_centres,
    dbscan_labels,
    jaccard_distance,
    load_uda_init,
    load_usl_checkpoint,
    pseudo_split,
)

CONFIGS = Path(__file__).resolve().parents[1] / "transreid_ssl/configs"


def tiny():
    return ReIDViT((32, 16), 8, 32, 2, 2, 2.0, 0.0)


def _jaccard_restated(f: np.ndarray, k1: int, k2: int) -> np.ndarray:
    """Zhong et al. 2017 written out densely: R(i, k) = {j in N(i, k) : i in N(j, k)} over the k + 1 nearest
    (self first); R*(i) = R(i, k1) plus every R(c, k1/2), c in R(i, k1), sharing > 2/3 of itself with R(i, k1);
    V_ij = exp(-d_ij) / sum_{R*(i)} exp(-d) on R*(i) with d = |f_i - f_j|^2; V_i <- mean of V over the k2
    nearest; d_J = 1 - sum min(V_i, V_j) / sum max(V_i, V_j)."""
    n = len(f)
    d = ((f[:, None] - f[None]) ** 2).sum(-1)
    order = np.argsort(d, axis=1, kind="stable")[:, :k1]  # the k1 kept by the kNN search

    def recip(i, k):
        return {j for j in order[i, :k + 1] if i in order[j, :k + 1]}

    v = np.zeros((n, n))
    for i in range(n):
        r = recip(i, k1)
        full = set(r)
        for c in r:
            rc = recip(c, int(np.around(k1 / 2)))
            if len(rc & r) > 2 / 3 * len(rc):
                full |= rc
        idx = sorted(full)
        w = np.exp(-d[i, idx])
        v[i, idx] = w / w.sum()
    v = np.stack([v[order[i, :k2]].mean(0) for i in range(n)])
    mins = np.minimum(v[:, None], v[None]).sum(-1)
    maxs = np.maximum(v[:, None], v[None]).sum(-1)
    return 1 - mins / maxs


def test_jaccard_distance_matches_the_restated_formula():
    g = torch.Generator().manual_seed(0)
    centres = F.normalize(torch.randn(3, 8, generator=g), dim=1)
    f = F.normalize(centres.repeat_interleave(6, 0) + 0.3 * torch.randn(18, 8, generator=g), dim=1)
    got = jaccard_distance(f, k1=6, k2=3)
    want = _jaccard_restated(f.double().numpy(), 6, 3)
    np.testing.assert_allclose(got, want, atol=2e-6)
    assert np.allclose(np.diag(got), 0, atol=1e-6) and got.min() >= 0 and got.max() <= 1


def test_dbscan_drops_outliers_and_centres_are_renormalised_means():
    block = np.repeat(np.arange(3), 5)
    dist = np.where(block[:, None] == block[None], 0.1, 1.0)
    dist = np.pad(dist, ((0, 2), (0, 2)), constant_values=1.0)  # two loners, far from everything
    np.fill_diagonal(dist, 0.0)
    labels = dbscan_labels(dist.astype(np.float32), eps=0.6, min_samples=4)
    assert labels.tolist() == block.tolist() + [-1, -1]
    split = pseudo_split(ReIDSplit(list(range(17)), [0] * 17, list(range(17))), labels)
    assert split.sources == list(range(15)) and split.pids == block.tolist()
    f = F.normalize(torch.randn(17, 4, generator=torch.Generator().manual_seed(1)), dim=1)
    mem = cluster_centres(f, labels)
    assert mem.shape == (3, 4)
    for c in range(3):
        assert torch.allclose(mem[c], F.normalize(f[5 * c:5 * c + 5].mean(0), dim=0), atol=1e-6)
    small = dist.copy()
    small[:4, :4] = np.where(np.eye(4), 0.0, 0.1)  # a 4-member group is a cluster at min_samples 4 ...
    assert dbscan_labels(small[:4, :4].astype(np.float32), 0.6, 4).tolist() == [0, 0, 0, 0]
    assert dbscan_labels(small[:3, :3].astype(np.float32), 0.6, 4).tolist() == [-1, -1, -1]  # ... 3 are not


def test_memory_loss_and_hard_update_by_hand():
    mem = ClusterMemory(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), temp=0.5, momentum=0.2, mode="hard")
    x = torch.tensor([[0.6, 0.8], [1.0, 0.0], [0.0, 2.0]])  # two of cluster 0, one of cluster 1
    y = torch.tensor([0, 0, 1])
    logits = torch.tensor([[0.6, 0.8], [1.0, 0.0], [0.0, 1.0]]) / 0.5
    assert torch.allclose(mem.loss(x, y), F.cross_entropy(logits, y))
    mem.update(x, y)
    # cluster 0: dots 0.6 and 1.0 -> the harder (0.6, 0.8); 0.2 (1, 0) + 0.8 (0.6, 0.8) = (0.68, 0.64), renormalised
    want0 = torch.tensor([0.68, 0.64]) / np.hypot(0.68, 0.64)
    assert torch.allclose(mem.features[0], want0, atol=1e-6)
    assert torch.allclose(mem.features[1], torch.tensor([0.0, 1.0]))  # 0.2 e1 + 0.8 e1
    every = ClusterMemory(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), momentum=0.5, mode="all")
    every.update(torch.tensor([[0.0, 1.0], [1.0, 0.0]]), torch.tensor([0, 0]))  # sequential, batch order
    m1 = F.normalize(torch.tensor([0.5, 0.5]), dim=0)
    assert torch.allclose(every.features[0], F.normalize(0.5 * m1 + 0.5 * torch.tensor([1.0, 0.0]), dim=0))


def test_sampler_prefers_other_cameras_and_shards_the_global_batch():
    pids = [0, 0, 0, 1, 1, 1, 1, 2, 3, 3]
    cams = [0, 1, 1, 0, 0, 0, 0, 5, 1, 2]
    s = MultiGallerySampler(pids, cams, num_instances=3, batch_size=6, iters=5, seed=3)
    idx = list(s)
    assert len(idx) == len(s) == 30
    for b in range(5):  # every anchor's companions come from another camera when the identity has one
        batch = idx[6 * b:6 * b + 6]
        assert all(0 <= i < 10 for i in batch)
    halves = [list(MultiGallerySampler(pids, cams, 3, 6, 5, seed=3, num_replicas=2, rank=r)) for r in (0, 1)]
    assert [i for b in range(5) for i in halves[0][3 * b:3 * b + 3] + halves[1][3 * b:3 * b + 3]] == idx
    one = MultiGallerySampler([7, 7], [0, 1], 4, 4, 1, seed=0)._pass(np.random.default_rng(0))
    assert len(one) == 4 and len(set(cams_of := [[0, 1][i] for i in one])) == 2 and cams_of.count(cams_of[0]) == 1


def test_uda_init_drops_classifier_and_bnneck_and_is_strict(tmp_path):
    torch.manual_seed(0)
    src = ReIDModel(tiny(), 5)
    sd = {f"module.{k}": v for k, v in src.state_dict().items()} | {"module.base.fc.weight": torch.zeros(3, 32)}
    torch.save(sd, tmp_path / "transformer_120.pth")
    dst = USLModel(tiny())
    load_uda_init(dst.base, tmp_path / "transformer_120.pth")
    assert all(torch.equal(dst.base.state_dict()[k], v) for k, v in src.base.state_dict().items())
    assert torch.equal(dst.bottleneck.weight, torch.ones(32))  # re-initialised, not the source BN-neck
    torch.save({"teacher": {"backbone.norm.weight": torch.ones(32)}}, tmp_path / "dino.pth")
    with pytest.raises(CheckpointMismatchError, match="dino.pth"):
        load_uda_init(USLModel(tiny()).base, tmp_path / "dino.pth")


def test_released_usl_checkpoint_layout_loads(tmp_path):
    torch.manual_seed(0)
    src = USLModel(tiny())
    flat = {(k if k.startswith("bottleneck.") else k.removeprefix("base.")): v for k, v in src.state_dict().items()}
    torch.save({"state_dict": {f"module.{k}": v for k, v in flat.items()}, "epoch": 50, "best_mAP": 0.9},
               tmp_path / "model_best.pth.tar")
    dst = USLModel(tiny())
    load_usl_checkpoint(dst, tmp_path / "model_best.pth.tar")
    x = torch.randn(2, 3, 32, 16)
    assert torch.allclose(src.eval()(x), dst.eval()(x))


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("u[sd][la]_*.yaml")))
def test_usl_uda_configs_validate(path):
    cfg = load_config(path, TransReIDSSLConfig, [])
    assert cfg.stage == "usl" and cfg.usl.min_samples == 4
    u = cfg.usl
    assert (u.k2, u.temp, u.momentum, u.memory_update) == (6, 0.05, 0.2, "hard")
    if "synperson" not in path.name:
        assert u.eps == (0.7 if cfg.data.name == "msmt17" else 0.6)
        assert (cfg.model.stem == "ics") == ("-ics_" in path.name)
        # the official recipe (spec section 2): k1 30, 50 epochs x 200 iterations of 32 x 8, SGD .9 lr 3.5e-4
        # wd 5e-4 on every parameter, StepLR(20, 0.1), drop path .3
        assert (u.k1, u.num_instances, u.iters, cfg.engine.epochs, cfg.engine.batch_size) == (30, 8, 200, 50, 256)
        o, s = cfg.optim, cfg.sched
        assert (o.name, o.lr, o.momentum, o.weight_decay, o.bias_lr_factor, o.no_decay_keys) == (
            "sgd", 3.5e-4, 0.9, 5e-4, 1.0, [])
        assert (s.name, s.decay_epochs, s.decay_rate, s.warmup_epochs) == ("step", 20, 0.1, 0)
        assert cfg.model.drop_path_rate == 0.3
        pair = {"market1501": ("market1501", "msmt17"), "msmt17": ("msmt17", "market1501")}[cfg.data.name]
        assert path.name.endswith(f"_{pair[0]}.yaml") or path.name.endswith(f"{pair[1]}-{pair[0]}.yaml")


def test_usl_model_feature_is_l2norm_of_bn_of_cls():
    torch.manual_seed(0)
    m = USLModel(tiny()).eval()
    with torch.no_grad():
        m.bottleneck.running_mean.normal_()
        m.bottleneck.running_var.uniform_(0.5, 2.0)
        x = torch.randn(3, 3, 32, 16)
        want = F.normalize(m.bottleneck(m.base(x)), dim=1)
        assert torch.allclose(m(x), want) and torch.allclose(m(x).norm(dim=1), torch.ones(3))
    assert not m.bottleneck.bias.requires_grad  # the BN-neck's bias is frozen at zero, as the official


@pytest.mark.slow
def test_usl_run_resumes_to_the_same_weights(tmp_path):
    """Two epochs straight equal one epoch + a resume (clusters and memory are task state)."""
    from shared.engine import Trainer

    over = ["data.pool_size=60", "data.n_train_ids=20", "data.n_test_ids=10", "usl.iters=3", "usl.k1=10",
            "engine.epochs=2", "logger.progress=false", "engine.eval_every=0"]
    cfg_path = CONFIGS / "usl_vit-tiny-d64_1xb64-12e_synperson.yaml"

    def run(d, extra, resume=None):
        cfg = load_config(cfg_path, TransReIDSSLConfig, over + extra)
        return Trainer(build_task(cfg), cfg, d, resume=resume)

    a = run(tmp_path / "a", [])
    a.fit()
    run(tmp_path / "b", ["engine.epochs=1"]).fit()
    b = run(tmp_path / "b", [], resume=tmp_path / "b" / "last.pt")
    b.fit()
    for k, v in a.model.state_dict().items():
        assert torch.equal(v, b.model.state_dict()[k]), k
    assert torch.equal(a.task.memory.features, b.task.memory.features)
    lines = (tmp_path / "a" / "metrics.jsonl").read_text()
    assert '"clusters"' in lines and '"mAP"' in lines
    assert lines.count('"clusters"') == 2  # re-clustered at the start of every epoch


@pytest.mark.parametrize("script,env", [
    ("usl.sh", {"DATASET": "market1501"}), ("usl.sh", {"DATASET": "msmt17", "STEM": "ics"}),
    ("uda.sh", {"TARGET": "market1501"}), ("uda.sh", {"TARGET": "msmt17", "STEM": "ics"}),
    ("msmt17.sh", {}),
])
def test_scripts_launch_existing_configs(script, env, tmp_path):
    """Each launch line names a config that exists (PYTHON=echo prints the commands instead of running them)."""
    import os
    import subprocess

    root = CONFIGS.parents[1]
    e = os.environ | env | {"PYTHON": "echo", "DATA_ROOT": str(tmp_path), "WEIGHTS": "p.pth",
                            "SOURCE_CHECKPOINT": "s.pt"}
    out = subprocess.run(["bash", f"transreid_ssl/scripts/{script}"], cwd=root, env=e, capture_output=True, text=True,
                         check=True).stdout
    cfgs = {w for line in out.splitlines() for w in line.split() if w.endswith(".yaml")}
    assert cfgs and all((root / c).is_file() for c in cfgs), out
    if script == "msmt17.sh":
        assert "MSMT17" in out and "Market" not in out


@pytest.mark.parametrize("script,name", [("msmt17.sh", "MSMT17"), ("market1501.sh", "Market-1501")])
def test_each_fine_tuning_script_prints_its_own_help_and_errors(script, name, tmp_path):
    """``msmt17.sh`` runs market1501.sh's steps but its help and one-line errors are its own (issue 19)."""
    import os
    import subprocess

    root = CONFIGS.parents[1]
    other = {"MSMT17": "Market-1501", "Market-1501": "MSMT17"}[name]

    def run(*args, **env):
        return subprocess.run(["bash", f"transreid_ssl/scripts/{script}", *args], cwd=root, text=True,
                              capture_output=True, env=base | {"PYTHON": "echo"} | env)

    base = {k: v for k, v in os.environ.items() if k not in ("DATA_ROOT", "WEIGHTS", "DATASET", "SLURM_JOB_ID")}

    h = run("--help")
    assert h.returncode == 0 and h.stdout.splitlines()[0].startswith(f"Supervised fine-tuning on {name}")
    assert f"scripts/{script}" in h.stdout and other not in h.stdout.splitlines()[0]
    for env, var in (({}, "DATA_ROOT"), ({"DATA_ROOT": str(tmp_path)}, "WEIGHTS")):
        r = run(**{k: v for k, v in env.items()})
        err = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(err) == 1 and err[0].startswith(f"{script}: error: set {var}="), r.stderr


@pytest.mark.parametrize("script,var,value", [("usl.sh", "DATASET", "cuhk03"), ("uda.sh", "TARGET", "duke")])
def test_usl_uda_scripts_refuse_an_unknown_dataset_in_one_line(script, var, value, tmp_path):
    import os
    import subprocess

    r = subprocess.run(["bash", f"transreid_ssl/scripts/{script}"], cwd=CONFIGS.parents[1], text=True,
                       capture_output=True, env=os.environ | {"PYTHON": "echo", "DATA_ROOT": str(tmp_path),
                                                              "WEIGHTS": "w.pth", "SOURCE_CHECKPOINT": "s.pt",
                                                              var: value})
    err = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(err) == 1 and value in err[0] and err[0].startswith(f"{script}: error:")


def test_pseudo_label_ari_leaves_outliers_out():
    from transreid_ssl.usl import pseudo_label_ari

    pids = [3, 3, 5, 5, 7, 7]
    assert pseudo_label_ari(np.array([1, 1, 0, 0, -1, -1]), pids) == pytest.approx(1.0)  # a relabelling, outliers out
    assert pseudo_label_ari(np.array([0, 1, 0, 1, -1, 0]), pids) < 0.5
    assert pseudo_label_ari(np.full(6, -1), pids) == 0.0


@pytest.mark.slow
def test_usl_uda_suite_quick_writes_rows_claims_and_clusters(tmp_path):
    """The suite end to end in --quick sizes: four rows, the two claims, clusters and ARI per epoch per loop row."""
    import json

    from transreid_ssl import reproduce, suite_usl_uda

    if not (reproduce.ENCODERS / "manifest.json").is_file():
        pytest.skip("no shipped encoders")
    assert reproduce.main(["--suite", "usl_uda", "--quick", "--seeds", "0", "--jobs", "1", "--out", str(tmp_path)]) == 0
    s = json.loads((tmp_path / "summary.json").read_text())
    assert [r["method"] for r in s["rows"]] == suite_usl_uda.ROWS
    assert set(s["claims"]) == {"usl > usl_scratch", "uda > uda_direct"}
    assert list(s["tuning_trials"]) == suite_usl_uda.ROWS
    assert not any(c["holds"] for c in s["claims"].values())  # one seed: no spread, never a claim
    for row in ("usl_scratch", "usl", "uda"):
        counts, aris = s["clusters_per_epoch"][row]["0"], s["pseudo_ari_per_epoch"][row]["0"]
        assert len(counts) == len(aris) == 1 and counts[0] >= 2 and -1.0 <= aris[0] <= 1.0
    assert (tmp_path / "summary.png").is_file()


def test_usl_uda_set_overrides_reach_every_job_source_included(tmp_path):
    """``--suite usl_uda --set data.background=shot``: the switch reaches the source model and the target rows
    alike, after each job's own overrides; without it the configs are the committed ones."""
    from shared.config import load_config
    from transreid_ssl.suite_usl_uda import JOBS, _overrides
    from transreid_ssl.train import TransReIDSSLConfig

    for job, (path, _) in JOBS.items():
        plain = load_config(path, TransReIDSSLConfig, _overrides(job, 100, tmp_path, False))
        shot = load_config(path, TransReIDSSLConfig, _overrides(job, 100, tmp_path, False, ["data.background=shot"]))
        assert (plain.data.background, shot.data.background) == ("camera", "shot")
        assert shot.data.seed == plain.data.seed and shot.data.cam_strength == plain.data.cam_strength
