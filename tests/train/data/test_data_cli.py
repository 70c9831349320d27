from scratchdet.cli import main
from tests.train.data.test_yolo import make_yolo, with_val


def test_data_check_prints_each_split_and_the_class_counts(tmp_path, capsys):
    root = with_val(make_yolo(tmp_path, {"a": "1 0.5 0.5 0.2 0.2\n1 0.2 0.2 0.1 0.1\n", "b": "0 0.5 0.5 0.2 0.2\n",
                                         "c": ""}))
    assert main(["data", "check", str(root)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{root}: yolo layout"
    assert out[1] == f"{root} [train]: 3 images, 3 boxes (images without boxes (background only): 1)"
    assert out[3].split() == ["class", "train", "val"]
    assert out[4].split() == ["cat", "1", "(1)", "1", "(1)"] and out[5].split() == ["dog", "2", "(1)", "0", "(0)"]
    assert out[6].split() == ["(background", "images)", "1", "0"]


def test_data_check_lists_every_problem_and_fails(tmp_path, capsys):
    root = with_val(make_yolo(tmp_path, {"a": "7 0.5 0.5 0.2 0.2\n", "b": "0 0.5 0.5\n"}))
    assert main(["data", "check", str(root / "data.yaml")]) == 1
    out = capsys.readouterr().out
    assert f"{root / 'labels' / 'train' / 'a.txt'}:1: class id 7 out of range 0..1" in out
    assert f"{root / 'labels' / 'train' / 'b.txt'}:1: 3 columns" in out
    assert "[val]: 1 images, 1 boxes" in out and "problems in split(s) train" in out


def test_data_convert_writes_the_other_layout(tmp_path, capsys):
    root = with_val(make_yolo(tmp_path / "y", {"a": "1 0.5 0.5 0.2 0.2\n"}))
    assert main(["data", "convert", str(root), "--to", "coco", "--out", str(tmp_path / "c")]) == 0
    assert "coco dataset: " in capsys.readouterr().out
    assert main(["data", "check", str(tmp_path / "c")]) == 0
    assert "coco layout" in capsys.readouterr().out
