"""python -m transfgu.evaluate: strict decoder loads (released decoder-only files and our engine checkpoints),
the released key layout, the official protocol on a LIP fixture, strict JSON out, one-line errors."""
import json
import sys
from pathlib import Path

import pytest
import torch

from shared.config import load_config
from transfgu import evaluate as ev
from transfgu.model import MaskTransformer
from transfgu.train import Segmenter, TransFGUConfig

sys.path.insert(0, str(Path(__file__).parent))
from test_transfgu_datasets import write_lip  # noqa: E402

CFG = Path(__file__).resolve().parents[1] / "transfgu" / "configs" / "transfgu_vit-s8_1xb512-100e_lip5.yaml"
TINY = ["model.embed_dim=16", "model.depth=1", "model.num_heads=2", "model.dec_layers=1", "model.dec_heads=2",
        "model.dec_mlp=32", "data.eval_size=8"]


def test_released_decoder_key_layout():
    dec = MaskTransformer(27)
    shapes = {k: tuple(v.shape) for k, v in dec.state_dict().items()}
    assert shapes["cls_emb"] == (1, 27, 384) and shapes["proj_patch"] == (384, 384)
    assert shapes["blocks.0.attn.qkv.weight"] == (1152, 384) and "blocks.0.attn.qkv.bias" not in shapes
    assert shapes["blocks.1.mlp.fc1.weight"] == (1536, 384) and shapes["mask_norm.weight"] == (27,)
    assert {"proj_dec.weight", "decoder_norm.bias", "proj_classes"} <= set(shapes)


def test_decoder_loads_strictly_from_both_formats(tmp_path):
    cfg = load_config(CFG, TransFGUConfig, TINY)
    src = Segmenter(cfg)
    torch.save(src.decoder.state_dict(), tmp_path / "lip_5_decoder.pt")  # released: decoder only
    torch.save({"model": src.state_dict(), "epoch": 3}, tmp_path / "last.pt")  # ours: encoder + decoder
    for name in ("lip_5_decoder.pt", "last.pt"):
        dst = Segmenter(cfg)
        ev.load_decoder(dst.decoder, tmp_path / name)
        for k, v in src.decoder.state_dict().items():
            assert torch.equal(dst.decoder.state_dict()[k], v), (name, k)
    wrong = load_config(CFG, TransFGUConfig, TINY + ["data.num_classes=20"])  # a LIP-19 file into LIP-5
    torch.save(Segmenter(wrong).decoder.state_dict(), tmp_path / "lip_19_decoder.pt")
    with pytest.raises(ValueError, match=r"lip_19_decoder\.pt: shape mismatch for cls_emb"):
        ev.load_decoder(Segmenter(cfg).decoder, tmp_path / "lip_19_decoder.pt")
    sd = src.decoder.state_dict()
    sd.pop("mask_norm.bias")
    torch.save(sd, tmp_path / "partial.pt")
    with pytest.raises(ValueError, match=r"partial\.pt.*mask_norm\.bias"):
        ev.load_decoder(Segmenter(cfg).decoder, tmp_path / "partial.pt")


def test_evaluate_cli_scores_and_writes_strict_json(tmp_path, capsys):
    write_lip(tmp_path / "lip", "val", ids=("a", "b", "c"))
    cfg = load_config(CFG, TransFGUConfig, TINY)
    torch.save(Segmenter(cfg).decoder.state_dict(), tmp_path / "lip_5_decoder.pt")
    out = tmp_path / "res" / "eval.json"
    res = ev.main(["--config", str(CFG), "--checkpoint", str(tmp_path / "lip_5_decoder.pt"), "--out", str(out),
                   "--device", "cpu", f"data.root={tmp_path / 'lip'}", *TINY])
    assert res["images"] == 3 and 0 <= res["acc"] <= 100
    text = out.read_text()
    assert "NaN" not in text and json.loads(text)["images"] == 3
    assert "mIoU" in capsys.readouterr().out


def test_evaluate_cli_errors_are_one_line(tmp_path, capsys):
    write_lip(tmp_path / "lip", "val")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(SystemExit) as e:
        ev.main(["--config", str(CFG), "--checkpoint", str(tmp_path / "junk.pt"), f"data.root={tmp_path / 'lip'}",
                 *TINY])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 1 and len(err.splitlines()) == 1 and "junk.pt" in err


def test_strict_json_turns_nan_into_null():
    assert json.loads(ev.strict_json({"mIoU": float("nan"), "acc": 1.0})) == {"mIoU": None, "acc": 1.0}
