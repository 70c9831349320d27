import os
import time

import pytest

from scratchdet.bounded_yaml import MAX_YAML_BYTES, MAX_YAML_NODES, YamlError, load_yaml

# Nine levels of nine aliases: 9^9 (387 million) strings in 500 bytes.
ALIAS_BOMB = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(8))


def test_anchors_and_merge_keys_within_the_bound_load_as_yaml_does(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("base: &base {lr: 0.1, epochs: 3}\ntrain:\n  <<: *base\n  epochs: 5\nnames: [a, b]\n")
    assert load_yaml(path) == {"base": {"lr": 0.1, "epochs": 3}, "train": {"lr": 0.1, "epochs": 5},
                               "names": ["a", "b"]}
    (tmp_path / "empty.yaml").write_text("")
    assert load_yaml(tmp_path / "empty.yaml") is None


def test_an_alias_bomb_is_refused_quickly(tmp_path):
    path = tmp_path / "data.yaml"
    path.write_text(ALIAS_BOMB + "names: *i\n")
    started = time.perf_counter()
    with pytest.raises(YamlError, match=rf"data.yaml: the document expands to more than {MAX_YAML_NODES} nodes"):
        load_yaml(path)
    assert time.perf_counter() - started < 10  # generous: a loaded machine; the expansion would take minutes


def test_recursive_deep_large_special_and_malformed_files_are_refused_naming_them(tmp_path):
    cases = {
        "recursive.yaml": ("a: &a [1, *a]\n", "an alias refers to a node that contains it"),
        "deep.yaml": ("[" * 5_000 + "]" * 5_000, "nested deeper than"),
        "large.yaml": ("x: " + "y" * MAX_YAML_BYTES + "\n", f"larger than {MAX_YAML_BYTES} bytes"),
        "bad.yaml": ("a: [1, 2\n", "not valid YAML"),
        "latin1.yaml": (None, "not UTF-8 text"),
    }
    for name, (text, message) in cases.items():
        path = tmp_path / name
        if text is None:
            path.write_bytes(b"name: caf\xe9\n")
        else:
            path.write_text(text)
        with pytest.raises(YamlError, match=f"{name}: {message}"):
            load_yaml(path)
    os.mkfifo(tmp_path / "fifo.yaml")  # reading it would block
    with pytest.raises(YamlError, match=r"fifo.yaml: a FIFO \(named pipe\), not a regular file: not opened"):
        load_yaml(tmp_path / "fifo.yaml")
    with pytest.raises(YamlError, match=r"missing.yaml: cannot read the YAML file \(No such file or directory\)"):
        load_yaml(tmp_path / "missing.yaml")
