"""`scratchdet data synth`: the same seed writes the same bytes, another seed another set."""

import hashlib
import json

from scratchdet.cli import main


def _digests(folder):
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_data_synth_is_deterministic_per_seed(tmp_path, capsys):
    for name, seed in (("a", "3"), ("b", "3"), ("c", "4")):
        assert main(["data", "synth", "--out", str(tmp_path / name), "--images", "6", "--seed", seed]) == 0
    assert f"synthetic dataset: {tmp_path / 'a'} (6 images)" in capsys.readouterr().out
    first, again, other = (_digests(tmp_path / name) for name in "abc")
    assert len(first) == 6 + 2 and "annotations.json" in first and "splits.json" in first
    assert first == again  # annotations.json, splits.json and every image, byte for byte
    assert other["annotations.json"] != first["annotations.json"]
    assert {k for k in first if first[k] == other[k]} <= {"splits.json"}  # the split depends on the count only
    coco = json.loads((tmp_path / "a" / "annotations.json").read_text())
    assert len(coco["images"]) == 6 and coco["annotations"]
    assert [c["name"] for c in coco["categories"]] == ["circle", "square", "triangle"]
