"""SynPerson's issue-14 switches (``data.background``, ``data.id_cues``) and the reproduce ``--rows`` / ``--set``
plumbing used by the validation probe: the defaults draw the committed set bit for bit, each switch changes what
it says and nothing else."""
import hashlib

import numpy as np
import pytest

from transreid_ssl import reproduce
from transreid_ssl.synperson import _identity, make_synperson
from transreid_ssl.train import DataConfig, synperson_for

KW = dict(n_train_ids=4, n_test_ids=4, n_distractors=3, pool_size=16)
# sha256 of make_synperson(7, **KW) drawn with the generator before the switches existed (HEAD d58e1a6)
PINNED_DEFAULT = "89813e5af81ecdecb8ff2937a436942d9f3996cbcc264a77b99037e82391f3d3"
SPLITS = ("train", "query", "gallery", "pool", "heldout_query")


def _digest(s) -> str:
    h = hashlib.sha256()
    for name in SPLITS:
        split = getattr(s, name)
        for img, p, c in zip(split.sources, split.pids, split.camids):
            h.update(np.ascontiguousarray(img).tobytes())
            h.update(f"{p},{c};".encode())
    return h.hexdigest()


@pytest.fixture(scope="module")
def draws():
    return {v: make_synperson(7, **KW, **kw) for v, kw in (
        ("default", {}), ("explicit", {"background": "camera", "id_cues": "colour"}),
        ("shot", {"background": "shot"}), ("shape", {"id_cues": "shape"}))}


def test_default_draw_is_the_committed_one_bit_for_bit(draws):
    assert _digest(draws["default"]) == PINNED_DEFAULT
    assert _digest(draws["explicit"]) == PINNED_DEFAULT


@pytest.mark.parametrize("variant", ["shot", "shape"])
def test_a_switch_keeps_the_structure_of_the_set(draws, variant):
    a, b = draws["default"], draws[variant]
    for name in SPLITS:  # the same ids, cameras and split sizes: only pixels change
        assert getattr(a, name).pids == getattr(b, name).pids and getattr(a, name).camids == getattr(b, name).camids
    assert np.array_equal(a.pool_kind, b.pool_kind)
    assert any(not np.array_equal(x, y) for x, y in zip(a.train.sources, b.train.sources))


def _corner_spread(s) -> float:
    """Mean over cameras of the std across shots of the top-left 3x3 patch (always background: the person is
    centred and occluders sit at the bottom)."""
    corners = np.asarray([img[:3, :3].reshape(-1, 3).mean(0) for img in s.train.sources])
    cams = np.asarray(s.train.camids)
    return float(np.mean([corners[cams == c].std(0).mean() for c in np.unique(cams)]))


def test_background_shot_changes_the_background_from_shot_to_shot(draws):
    # camera: one colour per camera (spread = noise only); shot: every image its own scene
    assert _corner_spread(draws["default"]) < 12.0 < 25.0 < _corner_spread(draws["shot"])
    a, b = draws["default"], draws["shot"]
    # the person is untouched: the centre column of the torso is the same pixels up to nothing
    same = np.mean([np.array_equal(x[20:30, 15:17], y[20:30, 15:17]) for x, y in zip(a.train.sources,
                                                                                       b.train.sources)])
    assert same > 0.5


def test_id_cues_shape_keeps_backgrounds_and_colours_and_adds_colour_independent_structure(draws):
    a, b = draws["default"], draws["shape"]
    assert all(np.array_equal(x[:3, :3], y[:3, :3]) for x, y in zip(a.train.sources, b.train.sources))
    plain = _identity(np.random.default_rng(3))
    shaped = _identity(np.random.default_rng(3), np.random.default_rng(4))
    for k in ("skin", "top", "legs", "shoes", "bag", "bag_side", "bag_col", "width"):  # the spec's colours stay
        assert np.array_equal(plain[k], shaped[k])
    assert shaped["texture"] != 0 and np.allclose(shaped["top2"], 255.0 - shaped["top"])  # a pattern, in luminance
    assert {"period", "torso", "shorts", "hat"} <= set(shaped) and not {"period", "hat"} & set(plain)


def test_unknown_switch_values_are_refused():
    with pytest.raises(ValueError, match="background"):
        make_synperson(0, **KW, background="street")
    with pytest.raises(ValueError, match="id_cues"):
        make_synperson(0, **KW, id_cues="hats")


def test_config_threads_the_switches_to_the_generator():
    d = DataConfig(name="synperson", seed=7, background="shot", id_cues="shape", **{
        "n_train_ids": 4, "n_test_ids": 4, "pool_size": 16})
    s = synperson_for(d, (64, 32))
    ref = make_synperson(7, n_train_ids=4, n_test_ids=4, pool_size=16, background="shot", id_cues="shape")
    assert _digest(s) == _digest(ref)


def test_rows_option_and_set_go_to_every_row():
    assert reproduce.parse_rows("dino_full,scratch") == ["scratch", "dino_full"]  # ROWS order
    with pytest.raises(SystemExit, match="--rows"):
        reproduce.parse_rows("scratch,nope")
    ov = reproduce.row_overrides("scratch", 100, True, extra=["data.background=shot"])
    assert ov[-1] == "data.background=shot" and "data.seed=100" in ov
    assert reproduce.row_overrides("scratch", 0, False) == ["logger.progress=false", "engine.seed=0", "data.seed=0"]


def test_claims_of_a_row_subset_only_scores_the_claims_it_has():
    rows = {"scratch": [30.0, 32.0], "dino_full": [40.0, 41.0]}
    c = reproduce.claims_of({"mAP": rows, "heldout_mAP": rows})
    assert list(c) == ["dino_full >= scratch + 5"] and c["dino_full >= scratch + 5"]["holds"]


def test_pretrain_threads_data_switches_to_the_pool_theta1_and_the_manifest(tmp_path):
    import json

    from transreid_ssl import pretrain

    enc, pre = tmp_path / "enc", tmp_path / "pre"
    assert pretrain.main(["--quick", "--seeds", "3", "--jobs", "1", "--arms", "dino_cfs50", "--out", str(enc),
                          "--run-root", str(pre), "--set", "data.background=shot"]) == 0
    entries = json.loads((enc / "manifest.json").read_text())["encoders"]
    assert "background='shot'" in entries["dino_cfs50_seed3.pth"]["data"]
    for job in ("pre_full", "ft_full", "pre_cfs50"):  # theta_1 fine-tunes on the same variant as the pool
        assert "background: shot" in "".join(p.read_text() for p in (pre / "seed3" / job).glob("*.yaml"))
