"""Embedded SynRGBD: synthetic RGB-D motion clips in which RGB and depth carry complementary evidence.

Six classes of a striped disk in a textured scene (16 frames of 32x32, depth in [0, 1] replicated to three
channels as the official loader feeds depth):

* ``expand``, ``contract`` (c0, c1): the disk grows or shrinks in place at a constant depth; visible in
  **both** modalities (a change of area, which survives the trunk's global pooling; translations, this
  set's first design, were learnt poorly by the RGB net: see the README);
* ``approach``, ``recede`` (c2, c3): the disk's depth goes 0.7 -> 0.3 or 0.3 -> 0.7 at a fixed pixel size
  and colour: visible **only in depth** (in RGB the clip is a static disk);
* ``warm_to_cool``, ``cool_to_warm`` (c4, c5): the disk's colour drifts red -> blue or blue -> red at a fixed
  place and depth: visible **only in RGB** (in depth the clip is a static disk).

So each modality alone tells 4 of the 6 classes apart and confuses one pair (ceiling 5/6 = 83.3 %), and the
two together tell all six apart. ``depth_fault`` (``rgb_fault``) is the probability that a clip's depth (RGB)
stream shows the motion of a different, randomly drawn class (a sensor fault: the scene is the same, the
actor's motion is a decoy's), so on those clips that modality's posterior is confidently wrong and only the
other modality, read jointly, can overrule it. ``motion_frames`` > 0 puts the motion (or colour drift) into a
random sub-window of that many frames, the rest of the clip holding the start or end pose (redundant frames,
what the recoupling module's frame weights are for). ``r_lo`` / ``r_change`` set the expand / contract radii
(small radius ~ U[r_lo], large = small + U[r_change]; default [3.5, 5] and [3, 4], the first design's draw).

:class:`SynAugment` is the official NvGesture training augmentation (rotation with probability 0.5 by an
integer angle in [-10, 10), resize 256 -> random crop 224 at left/top in [10, 32], no flip) scaled to
32-pixel frames (resize 36, offsets [1, 4], test crop at (4, 4) as NvGesture's (32, 32)), applied to whole
batches on the fly; the FRP maps get the same geometric transform (the official loader recomputes them from
the transformed frames; the maps are linear in the frames up to the ReLU, min-max and mask, so the two agree
up to interpolation at the mask edges, and recomputing would cost a rank pooling per clip and epoch).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from .data import frp_maps, normalise

CLASSES = ("expand", "contract", "approach", "recede", "warm_to_cool", "cool_to_warm")
DEPTH_ONLY = (2, 3)  # told apart only by depth
RGB_ONLY = (4, 5)  # told apart only by RGB
WARM_COOL = np.array([1.0, 0.0, -1.0], np.float32)  # colour drift direction (red up, blue down)
PAD = float(normalise(np.float32(0.0)))  # official warpAffine fills 0 before (x - 127.5) / 128


@dataclass
class SynConfig:
    """The generator's switches (the embedded config's ``data:`` block)."""

    frames: int = 16
    size: int = 32
    window: int = 4  # FRP window (NvGesture 4)
    depth_fault: float = 0.15  # P(depth stream shows a decoy class's motion)
    rgb_fault: float = 0.0  # P(RGB stream shows a decoy class's motion); never both in one clip
    motion_frames: int = 0  # 0: motion over the whole clip; k: in a random k-frame sub-window
    colour_shift: float = 0.3  # half-range of the colour drift of c4/c5 along (R, G, B) = (+1, 0, -1)
    # expand / contract radii: small radius lo ~ U[r_lo], large hi = lo + U[r_change] (pixels of the 32 px frame)
    r_lo: list[float] = field(default_factory=lambda: [3.5, 5.0])
    r_change: list[float] = field(default_factory=lambda: [3.0, 4.0])
    bg_texture: float = 0.15  # amplitude of the background's 4x4-block texture
    rgb_noise: float = 0.05
    depth_noise: float = 0.02


def motion_progress(t: int, motion_frames: int, rng: np.random.Generator) -> np.ndarray:
    """Progress a_i in [0, 1] per frame: linear over the clip, or over a random ``motion_frames`` sub-window
    (0 before it, 1 after it)."""
    if motion_frames <= 0 or motion_frames >= t:
        return np.linspace(0.0, 1.0, t)
    start = int(rng.integers(0, t - motion_frames + 1))
    return np.clip((np.arange(t) - start) / (motion_frames - 1), 0.0, 1.0)


def disk_state(label: int, a: float, scene: dict, cfg: SynConfig) -> tuple[float, float, float, np.ndarray]:
    """(radius, depth, colour) of the disk at progress ``a`` for class ``label``."""
    r, z, col = scene["r"], 0.5, scene["col"]
    lo, hi = scene["r_range"]
    if label == 0:
        r = lo + a * (hi - lo)
    elif label == 1:
        r = hi - a * (hi - lo)
    elif label in DEPTH_ONLY:
        z = 0.7 - 0.4 * a if label == 2 else 0.3 + 0.4 * a
    elif label in RGB_ONLY:
        sign = 1.0 if label == 4 else -1.0  # warm_to_cool: red falls, blue rises
        col = col + sign * cfg.colour_shift * (1.0 - 2.0 * a) * WARM_COOL
    return r, z, col


def render_clip(label: int, rng: np.random.Generator, cfg: SynConfig | None = None,
                depth_label: int | None = None, rgb_label: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One clip: rgb (T, S, S, 3) and depth (T, S, S) in [0, 1]. ``depth_label`` / ``rgb_label`` render that
    modality with another class's motion in the same scene (a fault); default: ``label``."""
    cfg = cfg or SynConfig()
    t, size = cfg.frames, cfg.size
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    bg = np.clip(rng.uniform(0.2, 0.6, 3) + cfg.bg_texture * rng.standard_normal((size // 4, size // 4, 3)).repeat(4, 0)
                 .repeat(4, 1), 0, 1)
    r_lo = rng.uniform(cfg.r_lo[0], cfg.r_lo[1])
    scene = {"r": rng.uniform(5, 8), "col": rng.uniform(0.35, 0.65, 3).astype(np.float32),
             "r_range": (r_lo, r_lo + rng.uniform(cfg.r_change[0], cfg.r_change[1]))}
    cx, cy = rng.uniform(10, size - 10, 2)
    bx, by, br = rng.uniform(4, size - 4, 2).tolist() + [rng.uniform(2, 4)]
    bcol, bdep = rng.uniform(0, 1, 3), rng.uniform(0.5, 0.8)
    phase = rng.uniform(0, 2 * np.pi)
    progress = motion_progress(t, cfg.motion_frames, rng)
    blob = (xx - bx) ** 2 + (yy - by) ** 2 <= br ** 2
    rgb = np.empty((t, size, size, 3), np.float32)
    dep = np.empty((t, size, size), np.float32)
    rgb_label = label if rgb_label is None else rgb_label
    depth_label = label if depth_label is None else depth_label
    for i, a in enumerate(progress):
        frame, d = bg.copy(), np.full((size, size), 0.9, np.float32)
        frame[blob], d[blob] = bcol, bdep
        r, _, col = disk_state(rgb_label, a, scene, cfg)
        disk = (xx - cx) ** 2 + (yy - cy) ** 2 <= r ** 2
        stripe = 0.35 + 0.65 * (np.sin(4 * (np.arctan2(yy - cy, xx - cx) - phase)) > 0)
        frame[disk] = np.clip(col, 0, 1)[None] * stripe[disk, None]
        r, z, _ = disk_state(depth_label, a, scene, cfg)
        d[(xx - cx) ** 2 + (yy - cy) ** 2 <= r ** 2] = z
        rgb[i], dep[i] = frame, d
    rgb = np.clip(rgb + cfg.rgb_noise * rng.standard_normal(rgb.shape), 0, 1)
    dep = np.clip(dep + cfg.depth_noise * rng.standard_normal(dep.shape), 0, 1)
    return rgb.astype(np.float32), dep.astype(np.float32)


@dataclass
class SynRGBD:
    """Tensors of the embedded set: rgb/depth (N, 3, T, S, S) normalised, g_rgb/g_depth (N, 1, T, S, S), y (N,),
    fault (N,): 0 clean, 1 RGB shows a decoy, 2 depth shows a decoy."""

    rgb: torch.Tensor
    depth: torch.Tensor
    g_rgb: torch.Tensor
    g_depth: torch.Tensor
    y: torch.Tensor
    fault: torch.Tensor


def make_synthetic(n_per_class: int, seed: int, cfg: SynConfig | None = None) -> SynRGBD:
    """Render ``n_per_class`` clips of each class (seeded) with their FRP maps."""
    cfg = cfg or SynConfig()
    rng = np.random.default_rng(seed)
    rs, ds, gr, gd, ys, faults = [], [], [], [], [], []
    k = len(CLASSES)
    for c in range(k):
        for _ in range(n_per_class):
            u, decoy = rng.uniform(), int((c + rng.integers(1, k)) % k)  # decoy: any other class
            fault = 2 if u < cfg.depth_fault else 1 if u < cfg.depth_fault + cfg.rgb_fault else 0
            rgb, dep = render_clip(c, rng, cfg, depth_label=decoy if fault == 2 else None,
                                   rgb_label=decoy if fault == 1 else None)
            xr, xd = normalise(rgb), normalise(np.repeat(dep[..., None], 3, -1))
            rs.append(xr)
            ds.append(xd)
            gr.append(frp_maps(xr, cfg.window))
            gd.append(frp_maps(xd, cfg.window))
            ys.append(c)
            faults.append(fault)
    clip = lambda a: torch.from_numpy(np.stack(a)).permute(0, 4, 1, 2, 3).contiguous()  # noqa: E731
    maps = lambda a: torch.from_numpy(np.stack(a))[:, None]  # noqa: E731
    return SynRGBD(clip(rs), clip(ds), maps(gr), maps(gd), torch.tensor(ys), torch.tensor(faults))


# --------------------------------------------------------------------------- NvGesture augmentation, scaled
@dataclass
class SynAugment:
    """Official NvGesture training augmentation at 32 pixels (the embedded config's ``augment:`` block)."""

    enabled: bool = True
    rotate_p: float = 0.5
    angle: list[int] = field(default_factory=lambda: [-10, 10])  # integer degrees in [lo, hi) (np.random.randint)
    resize: int = 36  # 256 / 224 * 32
    offsets: list[int] = field(default_factory=lambda: [1, 4])  # NvData left/top in [10, 32] of 256, ends included
    test_offset: list[int] = field(default_factory=lambda: [4, 4])  # NvGesture test crop at (32, 32) of 256
    flip: float = 0.0  # NvGesture: never (a mirrored left-to-right is another class)

    def theta(self, angle_deg: torch.Tensor, left: torch.Tensor, top: torch.Tensor, flip: torch.Tensor,
              size: int) -> torch.Tensor:
        """(B, 2, 3) ``affine_grid`` matrices: output crop -> source frame, in normalised coordinates.

        A crop pixel u of the resized frame sits at normalised n = s u_n + (2 left - (R - S)) / R with
        s = S / R; the rotation (cv2 about the centre, positive = counter-clockwise on screen) is sampled
        through its inverse."""
        s = size / self.resize
        a = torch.deg2rad(angle_deg.float())
        cos, sin = torch.cos(a), torch.sin(a)
        tx = (2 * left.float() - (self.resize - size)) / self.resize
        ty = (2 * top.float() - (self.resize - size)) / self.resize
        sx = torch.where(flip, -s, s)
        rot = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)  # (B, 2, 2)
        crop = torch.zeros(len(a), 2, 3)
        crop[:, 0, 0], crop[:, 1, 1], crop[:, 0, 2], crop[:, 1, 2] = sx, s, tx, ty
        return rot @ crop

    def draw(self, n: int, gen: torch.Generator) -> tuple[torch.Tensor, ...]:
        """One draw per clip: (angle, left, top, flip)."""
        rot = torch.rand(n, generator=gen) < self.rotate_p
        angle = torch.randint(self.angle[0], self.angle[1], (n,), generator=gen) * rot
        left, top = torch.randint(self.offsets[0], self.offsets[1] + 1, (2, n), generator=gen)
        return angle, left, top, torch.rand(n, generator=gen) < self.flip

    def apply(self, x: torch.Tensor, g: torch.Tensor, params: tuple[torch.Tensor, ...]
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """Transform clips x (B, C, T, S, S) and maps g (B, 1, T, S, S) alike (bilinear, zero border)."""
        b, c, t, s, _ = x.shape
        grid = F.affine_grid(self.theta(*params, size=s), [b, 1, s, s], align_corners=False)
        warp = lambda v, fill: F.grid_sample((v - fill).flatten(1, 2), grid, align_corners=False  # noqa: E731
                                             ).view(v.shape) + fill
        return warp(x, PAD), warp(g, 0.0)

    def train(self, x: torch.Tensor, g: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        return self.apply(x, g, self.draw(len(x), gen)) if self.enabled else (x, g)

    def test(self, data: SynRGBD) -> SynRGBD:
        """The fixed test geometry (resize, crop at ``test_offset``) on every clip of both modalities."""
        if not self.enabled:
            return data
        n = len(data.y)
        params = (torch.zeros(n, dtype=torch.long), torch.full((n,), self.test_offset[0]),
                  torch.full((n,), self.test_offset[1]), torch.zeros(n, dtype=torch.bool))
        rgb, g_rgb = self.apply(data.rgb, data.g_rgb, params)
        depth, g_depth = self.apply(data.depth, data.g_depth, params)
        return SynRGBD(rgb, depth, g_rgb, g_depth, data.y, data.fault)

