"""SynPerson: a procedurally drawn person-ReID set for the embedded CPU reproduction (spec section 8).

A person = skin-toned head, a top (colour + one of solid / h-stripe / v-stripe / checker / dots), legs
colour, shoes, an optional bag on one side. Each camera has a fixed channel gain, gamma, background
colour, blur and noise; each image a viewpoint (flip moves the bag, scale .85-1, x shift) and an occluder
with p .2. Train / test identities are disjoint; pid 0 = distractors in the gallery. The unlabelled
pool (``LUP``) is half person-like (new ids, new cameras) and half off-domain (textures, empty
backgrounds, two-person composites); ``pool_is_person`` says which, for the CFS precision check.
:func:`write_market_tree` writes it all in Market-1501 / LUP layout (with ``-1_*`` junk files).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .data import ReIDSplit

TEXTURES = ("solid", "hstripe", "vstripe", "checker", "dots")
BACKGROUNDS = ("camera", "shot")  # camera: one fixed colour per camera (the spec); shot: a new scene per image
ID_CUES = ("colour", "shape")  # colour: the spec's identities; shape: + cues that survive DINO's colour jitter
POOL_KINDS = ("person", "texture", "background", "two_person")


@dataclass
class SynPerson:
    train: ReIDSplit
    query: ReIDSplit
    gallery: ReIDSplit
    pool: ReIDSplit
    pool_is_person: np.ndarray  # (N_pool,) bool
    pool_kind: np.ndarray  # (N_pool,) index into POOL_KINDS
    heldout_query: ReIDSplit | None = None  # test ids under a camera with a colour cast no other camera has


def _identity(rng: np.random.Generator, cue_rng: np.random.Generator | None = None) -> dict:
    """One identity. With ``cue_rng`` (``id_cues="shape"``) it gets luminance / shape structure that DINO's colour
    jitter and grayscale keep (the spec's identities differ mostly in colour): always a pattern, a fixed
    texture period and the complementary second texture colour, a torso length, shorts or trousers, a hat. The
    cues come from their own generator, so ``rng``'s stream (every other draw of the set) stays the same."""
    ident = {"skin": rng.uniform(120, 230, 3) * np.array([1.0, 0.85, 0.7]), "top": rng.uniform(0, 255, 3),
             "top2": rng.uniform(0, 255, 3), "texture": int(rng.integers(len(TEXTURES))),
             "legs": rng.uniform(0, 255, 3), "shoes": rng.uniform(0, 120, 3), "bag": bool(rng.random() < 0.5),
             "bag_side": int(rng.integers(2)), "bag_col": rng.uniform(0, 255, 3), "width": rng.uniform(0.5, 0.75)}
    if cue_rng is not None:
        ident["texture"] = int(cue_rng.integers(1, len(TEXTURES)))  # always a pattern: the layout is the cue
        ident["top2"] = 255.0 - ident["top"]  # luminance contrast: the pattern survives grayscale
        ident |= {"period": int(cue_rng.integers(2, 6)), "torso": cue_rng.uniform(0.28, 0.48),
                  "shorts": bool(cue_rng.random() < 0.5), "hat": bool(cue_rng.random() < 0.5)}
    return ident


def _camera(rng: np.random.Generator, strength: float = 1.0) -> dict:
    """``strength`` scales the colour cast: 1 = the spec's gain .6-1.4 / gamma .6-1.6."""
    g, lg = 0.4 * strength, np.log(1.6) * strength
    return {"gain": rng.uniform(1 - g, 1 + g, 3), "gamma": float(np.exp(rng.uniform(-lg, lg))),
            "bg": rng.uniform(30, 220, 3),
            "blur": int(rng.integers(0, 2)), "noise": rng.uniform(2, 10)}


def _texture(kind: int, h: int, w: int, c1, c2, rng: np.random.Generator, period: int | None = None) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    drawn = int(rng.integers(3, 6))  # drawn even when ``period`` is given: every later draw stays the same
    period = drawn if period is None else period
    name = TEXTURES[kind]
    if name == "solid":
        m = np.zeros((h, w), bool)
    elif name == "hstripe":
        m = (yy // period) % 2 == 0
    elif name == "vstripe":
        m = (xx // period) % 2 == 0
    elif name == "checker":
        m = ((yy // period) + (xx // period)) % 2 == 0
    else:
        m = ((yy % period) == 1) & ((xx % period) == 1)
    return np.where(m[..., None], np.asarray(c2), np.asarray(c1))


def _draw_person(canvas: np.ndarray, ident: dict, rng: np.random.Generator, x0: int, width: int) -> None:
    """Draw one person into ``canvas`` (H, W, 3 float) within columns [x0, x0 + width)."""
    h = canvas.shape[0]
    scale = rng.uniform(0.85, 1.0)
    ph = int(h * scale)
    top_y = h - ph
    bw = max(4, int(width * ident["width"]))
    cx = x0 + width // 2 + int(rng.integers(-width // 8, width // 8 + 1))
    left = max(x0, cx - bw // 2)
    right = min(x0 + width, left + bw)
    head_h = max(3, ph // 6)
    yy, xx = np.mgrid[0:head_h, 0:max(2, bw // 2)]
    hw = xx.shape[1]
    ell = ((yy - head_h / 2) / (head_h / 2)) ** 2 + ((xx - hw / 2) / (hw / 2)) ** 2 <= 1
    hx = cx - hw // 2
    region = canvas[top_y:top_y + head_h, hx:hx + hw]
    region[ell[:region.shape[0], :region.shape[1]]] = ident["skin"]
    if ident.get("hat"):  # id_cues="shape": a dark brim across the top of the head
        canvas[top_y:top_y + max(1, head_h // 3), max(0, hx - 1):hx + hw + 1] = 20.0
    torso_y0, torso_y1 = top_y + head_h, top_y + head_h + int(ph * ident.get("torso", 0.38))
    canvas[torso_y0:torso_y1, left:right] = _texture(ident["texture"], torso_y1 - torso_y0, right - left,
                                                     ident["top"], ident["top2"], rng, ident.get("period"))
    legs_y1 = h - max(1, ph // 16)
    gap = max(1, (right - left) // 6)
    mid = (left + right) // 2
    canvas[torso_y1:legs_y1, left + gap:mid - gap // 2] = ident["legs"]
    canvas[torso_y1:legs_y1, mid + gap // 2:right - gap] = ident["legs"]
    canvas[legs_y1:h, left + gap:right - gap] = ident["shoes"]
    if ident.get("shorts"):  # id_cues="shape": bare lower legs
        knee = torso_y1 + (legs_y1 - torso_y1) // 2
        canvas[knee:legs_y1, left + gap:mid - gap // 2] = ident["skin"]
        canvas[knee:legs_y1, mid + gap // 2:right - gap] = ident["skin"]
    if ident["bag"]:
        bx = left - max(2, bw // 4) if ident["bag_side"] == 0 else right
        bx0, bx1 = max(x0, bx), min(x0 + width, bx + max(2, bw // 4))
        canvas[torso_y0 + 2:torso_y1, bx0:bx1] = ident["bag_col"]


def _apply_camera(img: np.ndarray, cam: dict, rng: np.random.Generator) -> np.ndarray:
    x = (np.clip(img, 0, 255) / 255.0) ** cam["gamma"] * cam["gain"]
    if cam["blur"]:
        x = (x + np.roll(x, 1, 0) + np.roll(x, -1, 0) + np.roll(x, 1, 1) + np.roll(x, -1, 1)) / 5
    x = x * 255 + rng.normal(0, cam["noise"], x.shape)
    return np.clip(x, 0, 255).astype(np.uint8)


def _background(cam: dict, rng: np.random.Generator, size, clutter: int,
                scene_rng: np.random.Generator | None = None) -> np.ndarray:
    """The background colour + pixel noise, and ``clutter`` random rectangles (a scene that changes
    from shot to shot, as street backgrounds do; 0 = the plain per-camera background of the spec).

    ``scene_rng`` None (``background="camera"``): the camera's fixed colour (the spec: it dominates every image
    of that camera). A generator (``"shot"``): each image draws from it its own colour and a low-contrast texture
    (wall, paving), so no background is shared by the shots of a camera; the camera keeps its colour cast, blur
    and noise (:func:`_apply_camera`), and ``rng``'s stream stays the same."""
    h, w = size
    if scene_rng is None:
        canvas = np.ones((h, w, 3)) * cam["bg"]
    else:
        c1 = scene_rng.uniform(30, 220, 3)
        c2 = np.clip(c1 + scene_rng.normal(0, 25, 3), 0, 255)
        canvas = _texture(int(scene_rng.integers(len(TEXTURES))), h, w, c1, c2, scene_rng).astype(float)
    canvas = canvas + rng.normal(0, 8, (h, w, 3))
    for _ in range(clutter):
        y0, x0 = int(rng.integers(0, h - 2)), int(rng.integers(0, w - 2))
        canvas[y0:y0 + int(rng.integers(2, h // 2)), x0:x0 + int(rng.integers(2, w // 2))] = rng.uniform(0, 255, 3)
    return canvas


def render(ident: dict, cam: dict, rng: np.random.Generator, size=(64, 32), occlude_p: float = 0.2,
           clutter: int = 0, scene_rng: np.random.Generator | None = None) -> np.ndarray:
    """One image (H, W, 3) uint8 of ``ident`` under ``cam`` (``clutter``, ``scene_rng``: see
    :func:`_background`)."""
    h, w = size
    canvas = _background(cam, rng, size, clutter, scene_rng)
    _draw_person(canvas, ident, rng, 0, w)
    if rng.random() < 0.5:  # viewpoint: mirror (moves the bag to the other side)
        canvas = canvas[:, ::-1]
    if rng.random() < occlude_p:
        oh = int(h * rng.uniform(0.2, 0.4))
        canvas[h - oh:, :] = rng.uniform(0, 255, 3)
    return _apply_camera(canvas, cam, rng)


def _off_domain(kind: int, cam: dict, rng: np.random.Generator, size, clutter: int = 0, scene_rng=None,
                cue_rng=None) -> np.ndarray:
    h, w = size
    if kind == 0:  # texture
        img = _texture(int(rng.integers(1, len(TEXTURES))), h, w, rng.uniform(0, 255, 3), rng.uniform(0, 255, 3),
                       rng).astype(float)
    elif kind == 1:  # empty background
        img = _background(cam, rng, size, clutter, scene_rng)
    else:  # two people side by side
        img = _background(cam, rng, size, clutter, scene_rng)
        for x0 in (0, w // 2):
            _draw_person(img, _identity(rng, cue_rng), rng, x0, w // 2)
    return _apply_camera(img, cam, rng)


def _shots(ids, cams, rng, size, n_cams_range=(2, 4), per_cam=(4, 6), clutter: int = 0, scene_rng=None):
    imgs, pids, camids = [], [], []
    for pid, ident in ids:
        for c in rng.choice(len(cams), size=int(rng.integers(n_cams_range[0], n_cams_range[1] + 1)), replace=False):
            for _ in range(int(rng.integers(per_cam[0], per_cam[1] + 1))):
                imgs.append(render(ident, cams[c], rng, size, clutter=clutter, scene_rng=scene_rng))
                pids.append(pid)
                camids.append(int(c))
    return imgs, pids, camids


def make_synperson(seed: int = 0, n_train_ids: int = 80, n_test_ids: int = 80, n_distractors: int = 20,
                   pool_size: int = 3000, n_cams: int = 6, size=(64, 32), per_cam=(4, 6),
                   cam_strength: float = 0.5, heldout_strength: float = 2.0, clutter: int = 0,
                   background: str = "camera", id_cues: str = "colour") -> SynPerson:
    """Generate the whole set in memory (deterministic in ``seed``).

    ``heldout_query``: two shots of every test id under one extra camera (cam id ``n_cams``) whose colour cast
    is ``heldout_strength`` times the spec's (the others: ``cam_strength``), drawn from a separate generator so
    that every other split is the same with or without it; match it against ``gallery``. ``clutter``: background
    rectangles per image (:func:`_background`) in every split. ``background`` (``camera`` | ``shot``, see
    :func:`_background`) and ``id_cues`` (``colour`` | ``shape``, see :func:`_identity`) apply to every split,
    the pool included; their defaults draw the spec's set bit for bit. Each switch draws from its own generator,
    so the rest of the set (cameras, identities' colours, shots, splits, occluders) is the same with it or without."""
    if background not in BACKGROUNDS or id_cues not in ID_CUES:
        raise ValueError(f"background must be one of {BACKGROUNDS} and id_cues one of {ID_CUES}, got "
                         f"{background!r}, {id_cues!r}")
    bg = np.random.default_rng([seed, 11]) if background == "shot" else None  # the per-shot scenes
    cues = np.random.default_rng([seed, 13]) if id_cues == "shape" else None  # the identities' shape cues
    rng = np.random.default_rng(seed)
    cams = [_camera(rng, cam_strength) for _ in range(n_cams)]
    train_ids = [(i, _identity(rng, cues)) for i in range(n_train_ids)]
    test_ids = [(i + 1, _identity(rng, cues)) for i in range(n_test_ids)]
    train = ReIDSplit(*_shots(train_ids, cams, rng, size, per_cam=per_cam, clutter=clutter, scene_rng=bg))
    ti, tp, tc = _shots(test_ids, cams, rng, size, per_cam=per_cam, clutter=clutter, scene_rng=bg)
    # query: one shot per (id, camera); the rest (incl. same-camera duplicates) go to the gallery
    q_idx, seen = [], set()
    for i, key in enumerate(zip(tp, tc)):
        if key not in seen:
            seen.add(key)
            q_idx.append(i)
    qs = set(q_idx)
    query = ReIDSplit([ti[i] for i in q_idx], [tp[i] for i in q_idx], [tc[i] for i in q_idx])
    g = [i for i in range(len(ti)) if i not in qs]
    gallery = ReIDSplit([ti[i] for i in g], [tp[i] for i in g], [tc[i] for i in g])
    for _ in range(n_distractors):  # pid 0: distractors, kept in the gallery as negatives
        c = int(rng.integers(n_cams))
        gallery.sources.append(render(_identity(rng, cues), cams[c], rng, size, clutter=clutter, scene_rng=bg))
        gallery.pids.append(0)
        gallery.camids.append(c)
    pool_cams = [_camera(rng, cam_strength) for _ in range(n_cams)]
    pool, kind = [], []
    for j in range(pool_size):
        cam = pool_cams[int(rng.integers(n_cams))]
        kind.append(0 if j % 2 == 0 else 1 + (j // 2) % 3)
        pool.append(render(_identity(rng, cues), cam, rng, size, clutter=clutter, scene_rng=bg) if kind[-1] == 0
                    else _off_domain(kind[-1] - 1, cam, rng, size, clutter, bg, cues))
    kind = np.asarray(kind)
    hrng = np.random.default_rng([seed, 7])
    hcam = _camera(hrng, heldout_strength)
    held = ReIDSplit([], [], [])
    for pid, ident in test_ids:
        for _ in range(2):
            held.sources.append(render(ident, hcam, hrng, size, clutter=clutter, scene_rng=bg))
            held.pids.append(pid)
            held.camids.append(n_cams)
    return SynPerson(train, query, gallery, ReIDSplit(pool, [0] * pool_size, [0] * pool_size), kind == 0, kind,
                     held)


def write_market_tree(data: SynPerson, root: str | Path, n_junk: int = 3) -> Path:
    """Write ``root/market1501/{bounding_box_train,query,bounding_box_test}`` and ``root/LUP/images``."""
    root = Path(root)
    base = root / "market1501"
    for sub, split, off in (("bounding_box_train", data.train, 1), ("query", data.query, 0),
                            ("bounding_box_test", data.gallery, 0)):
        d = base / sub
        d.mkdir(parents=True, exist_ok=True)
        for i, (img, pid, cam) in enumerate(zip(split.sources, split.pids, split.camids)):
            Image.fromarray(img).save(d / f"{pid + off:04d}_c{cam + 1}s1_{i:06d}_00.jpg")
        if sub == "bounding_box_test":
            for i in range(min(n_junk, len(split))):
                Image.fromarray(split.sources[i]).save(d / f"-1_c{split.camids[i] + 1}s1_{i:06d}_00.jpg")
    lup = root / "LUP" / "images"
    lup.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(data.pool.sources):
        Image.fromarray(img).save(lup / f"{i:02d}_00_0000_{i:08d}.jpg")
    return root


GENERIC_SHAPES = ("ellipse", "box", "triangle", "full")


def generic_images(n: int, seed: int, size=(64, 32), n_cams: int = 6,
                   cam_strength: float = 0.5) -> tuple[list[np.ndarray], list[int]]:
    """A labelled *generic* (non-person) image set: the stand-in for ImageNet in the ``supervised_generic``
    arm. Class = texture (5) x shape (ellipse, box, triangle, full frame) = 20 classes; colours, placement
    and size random, on a camera background under the SynPerson camera model. Deterministic in ``seed``."""
    rng = np.random.default_rng(seed)
    cams = [_camera(rng, cam_strength) for _ in range(n_cams)]
    h, w = size
    imgs, labels = [], []
    yy, xx = np.mgrid[0:h, 0:w]
    for _ in range(n):
        tex, shape = int(rng.integers(len(TEXTURES))), int(rng.integers(len(GENERIC_SHAPES)))
        cam = cams[int(rng.integers(n_cams))]
        canvas = np.ones((h, w, 3)) * cam["bg"] + rng.normal(0, 8, (h, w, 3))
        fill = _texture(tex, h, w, rng.uniform(0, 255, 3), rng.uniform(0, 255, 3), rng).astype(float)
        cy, cx = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w
        ry, rx = rng.uniform(0.2, 0.4) * h, rng.uniform(0.25, 0.45) * w
        name = GENERIC_SHAPES[shape]
        if name == "ellipse":
            m = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        elif name == "box":
            m = (abs(yy - cy) <= ry) & (abs(xx - cx) <= rx)
        elif name == "triangle":
            m = (yy >= cy - ry) & (yy <= cy + ry) & (abs(xx - cx) <= rx * (yy - cy + ry) / (2 * ry))
        else:
            m = np.ones((h, w), bool)
        canvas[m] = fill[m]
        imgs.append(_apply_camera(canvas, cam, rng))
        labels.append(tex * len(GENERIC_SHAPES) + shape)
    return imgs, labels
