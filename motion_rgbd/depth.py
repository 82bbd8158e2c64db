"""Raw-depth preprocessing for datasets that ship raw depth maps (NTU RGB+D's 16-bit ``MDepth-*.png``).

Official code (``lib/datasets/base.py``, ``Datasets.image_propose`` + ``depthProposess``): any frame that is
not ``H x W x 3`` is raw depth and goes through

1. ``np.uint8(255 * img)``: x255 then a cast to uint8. Integer depth (mm) wraps: the result is
   ``(255 v) mod 256 = (-v) mod 256``, i.e. the low byte of -v, not a scaled depth (:func:`depth_to_uint8`,
   switch ``scale='wrap'``; ``scale='range'`` is ours: a linear map of [lo, hi] mm onto 0..255).
2. a contour crop (:func:`contour_crop`): erode 3x3, dilate 10x10 (all-ones kernels), external contours,
   those with area > 500 px, the centre of each one's ``minAreaRect``, truncated to int; the crop centre is
   (min of the x's, min of the y's), taken separately, so it need not be any contour's centre; a 320 x 240
   window at (cx - 160, cy - 120), clamped at 0 on the left/top and cut at the frame's right/bottom edge
   (so it can be smaller than 320 x 240). The official code crashes when no contour is large enough
   (MotionRGBD issue #10): ``empty='error'`` says so in one line naming the frame; ``empty='centre'``
   (ours) crops around the frame centre instead.
3. ``cv2.applyColorMap(crop, COLORMAP_JET)``: OpenCV returns BGR, and the official loader hands that
   array on as if it were RGB (``jet_order='bgr'``, official); ``jet_order='rgb'`` (ours) flips it.

Everything after (resize, centre crop, normalisation) is the same as for RGB frames (``data.py``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

MIN_CONTOUR_AREA = 500.0  # official: contours with area > 500 px
CROP_WH = (320, 240)  # official crop window (width, height)


@dataclass
class RawDepthOptions:
    """The raw-depth switches (``data.raw_depth_*`` in the config). Official defaults."""

    scale: str = "wrap"  # wrap (official np.uint8(255 * v)) | range (ours: [lo, hi] mm -> 0..255, clipped)
    range_mm: tuple[float, float] = (500.0, 4500.0)  # scale='range' only
    empty: str = "error"  # error (official crashes; ours names the frame) | centre (ours: crop the frame centre)
    jet_order: str = "bgr"  # bgr (official: OpenCV's BGR colormap used as RGB) | rgb (ours)
    crop_wh: tuple[int, int] = CROP_WH

    def __post_init__(self):
        for name, val, ok in (("scale", self.scale, ("wrap", "range")), ("empty", self.empty, ("error", "centre")),
                              ("jet_order", self.jet_order, ("bgr", "rgb"))):
            if val not in ok:
                raise ValueError(f"raw_depth_{name} must be one of {ok}, got {val!r}")


class EmptyDepthError(ValueError):
    """No contour above the area threshold in a raw depth frame (the official code crashes here)."""


def is_raw_depth(img: np.ndarray) -> bool:
    """The official test: a frame whose last axis is not 3 (``H x W`` or ``H x W x 1``) is raw depth."""
    return img.shape[-1] != 3


def depth_to_uint8(depth: np.ndarray, scale: str = "wrap", range_mm: tuple[float, float] = (500.0, 4500.0)
                   ) -> np.ndarray:
    """Raw depth ``(H, W)`` (uint16 mm, or any integer/float map) -> uint8 ``(H, W)``.

    ``wrap`` (official ``np.uint8(255 * img)``): integers give ``(255 v) mod 256``; e.g. 1 -> 255, 2 -> 254,
    256 -> 0, 3000 -> 72. ``range`` (ours): ``clip((v - lo) / (hi - lo), 0, 1) * 255``, zeros stay 0.
    """
    d = depth[..., 0] if depth.ndim == 3 else depth
    if scale == "wrap":
        if np.issubdtype(d.dtype, np.integer):
            return ((255 * d.astype(np.int64)) % 256).astype(np.uint8)
        return (255 * d.astype(np.float64)).astype(np.int64).astype(np.uint8)  # float in [0, 1]: plain x255
    lo, hi = range_mm
    out = np.clip((d.astype(np.float64) - lo) / (hi - lo), 0.0, 1.0) * 255.0
    return np.where(d > 0, np.round(out), 0).astype(np.uint8)


def contour_centre(mask: np.ndarray) -> tuple[int, int] | None:
    """(cx, cy) as the official ``depthProposess``: min over the large contours' centres, x and y apart."""
    import cv2

    m = cv2.dilate(cv2.erode(mask, np.ones((3, 3), np.uint8)), np.ones((10, 10), np.uint8))
    contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    centres = [cv2.minAreaRect(c)[0] for c in contours if cv2.contourArea(c) > MIN_CONTOUR_AREA]
    if not centres:
        return None
    c = np.array(centres).astype(np.intp)  # official np.int0: truncation
    return int(c[:, 0].min()), int(c[:, 1].min())


def crop_box(centre: tuple[int, int], hw: tuple[int, int], crop_wh: tuple[int, int] = CROP_WH
             ) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the official window: clamped at 0, cut at the frame's right/bottom."""
    (cx, cy), (h, w), (cw, ch) = centre, hw, crop_wh
    left = max(cx - cw // 2, 0)
    top = max(cy - ch // 2, 0)
    return left, top, min(left + cw, w), min(top + ch, h)


def contour_crop(img8: np.ndarray, opts: RawDepthOptions = RawDepthOptions(), name: str | Path = "<frame>"
                 ) -> np.ndarray:
    """uint8 ``(H, W)`` -> the official contour-centred crop ``(h', w')``; see the module docstring."""
    centre = contour_centre(img8)
    if centre is None:
        if opts.empty == "error":
            raise EmptyDepthError(f"{name}: raw depth frame has no contour with area > {MIN_CONTOUR_AREA:.0f} px "
                                  "(official code crashes here; data.raw_depth_empty=centre crops the middle)")
        centre = (img8.shape[1] // 2, img8.shape[0] // 2)
    left, top, right, bottom = crop_box(centre, img8.shape[:2], opts.crop_wh)
    return img8[top:bottom, left:right]


def preprocess_raw_depth(depth: np.ndarray, opts: RawDepthOptions = RawDepthOptions(),
                         name: str | Path = "<frame>") -> np.ndarray:
    """Raw depth ``(H, W)`` -> the 3-channel uint8 frame the net sees ``(h', w', 3)`` (JET colormap)."""
    import cv2

    img8 = depth_to_uint8(depth, opts.scale, opts.range_mm)
    jet = cv2.applyColorMap(np.ascontiguousarray(contour_crop(img8, opts, name)), cv2.COLORMAP_JET)
    return jet if opts.jet_order == "bgr" else jet[:, :, ::-1].copy()
