"""MotionRGBD raw-depth preprocessing (official base.py depthProposess) on tiny arrays, values by hand."""
import cv2
import numpy as np
import pytest

from motion_rgbd.depth import (
    EmptyDepthError,
    RawDepthOptions,
    contour_centre,
    contour_crop,
    crop_box,
    depth_to_uint8,
    is_raw_depth,
    preprocess_raw_depth,
)


def test_uint8_wrap_is_official_cast():
    v = np.array([[0, 1, 2, 256, 3000, 65535]], np.uint16)
    # (255 v) mod 256 = (-v) mod 256: 3000 = 11*256 + 184 -> 256 - 184 = 72
    assert depth_to_uint8(v).tolist() == [[0, 255, 254, 0, 72, 1]]
    assert depth_to_uint8(v).tolist() == np.uint8(255 * v).tolist()  # the official expression itself
    r = depth_to_uint8(np.array([[0, 500, 2500, 4500, 9000]], np.uint16), "range", (500, 4500))
    assert r.tolist() == [[0, 0, 128, 255, 255]]  # (2500-500)/4000*255 = 127.5 -> 128; zeros stay 0


def test_raw_depth_detection():
    assert is_raw_depth(np.zeros((4, 5), np.uint16)) and is_raw_depth(np.zeros((4, 5, 1), np.uint8))
    assert not is_raw_depth(np.zeros((4, 5, 3), np.uint8))


def test_contour_centre_single_block():
    m = np.zeros((300, 400), np.uint8)
    m[100:140, 200:240] = 255
    # erode 3x3: rows 101..138, cols 201..238; dilate 10x10 (anchor 5): rows 97..143, cols 197..243
    # minAreaRect centre ((197+243)/2, (97+143)/2) = (220, 120)
    assert contour_centre(m) == (220, 120)
    assert crop_box((220, 120), (300, 400)) == (60, 0, 380, 240)  # top clamps at 0
    assert crop_box((380, 280), (300, 400)) == (220, 160, 400, 300)  # cut at the right/bottom edge
    assert contour_crop(m).shape == (240, 320)


def test_contour_centre_is_min_x_and_min_y_apart_small_contours_ignored():
    m = np.zeros((300, 400), np.uint8)
    m[80:120, 280:320] = 255  # centre (300, 100)
    m[180:220, 80:120] = 255  # centre (100, 200)
    m[10:20, 10:20] = 255  # 10x10 -> 17x17 after erode/dilate, contour area 16*16 = 256 <= 500: ignored
    assert contour_centre(m) == (100, 100)  # no contour is centred there: the official quirk


def test_empty_frame_error_names_file_or_crops_centre():
    z = np.zeros((300, 400), np.uint16)
    with pytest.raises(EmptyDepthError, match=r"MDepth-00000001.png: raw depth frame has no contour"):
        preprocess_raw_depth(z, name="x/MDepth-00000001.png")
    out = preprocess_raw_depth(z, RawDepthOptions(empty="centre"))
    assert out.shape == (240, 320, 3)  # centre (200, 150) -> box (40, 30, 360, 270)


def test_jet_colormap_channel_order():
    d = np.zeros((60, 60), np.uint16)
    d[10:50, 10:50] = 1  # wraps to 255
    bgr = preprocess_raw_depth(d)
    jet = cv2.applyColorMap(np.array([[0, 255]], np.uint8), cv2.COLORMAP_JET)[0]  # BGR of 0 and 255
    assert bgr.shape == (60, 60, 3)  # the whole 60x60 frame: smaller than the 320x240 window
    assert bgr[30, 30].tolist() == jet[1].tolist() and bgr[0, 0].tolist() == jet[0].tolist()
    rgb = preprocess_raw_depth(d, RawDepthOptions(jet_order="rgb"))
    assert rgb[30, 30].tolist() == jet[1][::-1].tolist()
    with pytest.raises(ValueError, match="raw_depth_scale"):
        RawDepthOptions(scale="clip")
