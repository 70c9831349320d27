import logging

import pytest

from scratchdet import flags
from scratchdet.cli import COMMANDS, build_parser, main


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch):
    monkeypatch.setattr(flags, "_warned", set())


@pytest.mark.parametrize(("argv", "old"), [
    (["val", "--weights", "a.pt", "--data", "d"], "--weights"),
    (["export", "--weights", "a.pt"], "--weights"),
    (["quantize", "--onnx", "a.onnx"], "--onnx"),
    (["engine", "--onnx", "a.onnx", "--precision", "fp16"], "--onnx"),
    (["bundle", "--onnx", "a.onnx", "--data", "d"], "--onnx"),
])
def test_old_model_flags_are_deprecated_aliases_of_model(argv, old, caplog):
    with caplog.at_level(logging.WARNING, logger="scratchdet"):
        args = build_parser(argv).parse_args(argv)
        again = build_parser(argv).parse_args(argv)
    assert args.model == again.model == argv[2]
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings == [f"{old} is deprecated, use --model (same meaning)"]  # once per process


def test_model_flag_itself_does_not_warn(caplog):
    with caplog.at_level(logging.WARNING, logger="scratchdet"):
        args = build_parser(["val", "--model", "a.pt", "--data", "d"]).parse_args(
            ["val", "--model", "a.pt", "--data", "d"])
        bench = build_parser(["bench", "--model", "a.onnx", "b.onnx"]).parse_args(["bench", "--model", "a.onnx",
                                                                                    "b.onnx"])
    assert args.model == "a.pt" and bench.model == ["a.onnx", "b.onnx"]
    assert not caplog.records


def _subparsers(parser):
    for action in parser._actions:
        if action.choices and hasattr(action, "_name_parser_map"):
            for name, sub in action._name_parser_map.items():
                yield name, sub
                yield from _subparsers(sub)


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_option_of_every_command_has_help_and_shows_its_default(command, capsys):
    parser = build_parser([command])
    checked = 0
    for name, sub in _subparsers(parser):
        if name != command and not sub.prog.startswith(f"scratchdet {command} "):
            continue
        for action in sub._actions:
            if action.option_strings and action.dest != "help":
                assert action.help, f"{command}: {action.option_strings} has no help text"
                checked += 1
    assert checked > 0
    with pytest.raises(SystemExit):
        build_parser([command, "--help"]).parse_args([command, "--help"])
    if command == "predict":
        text = capsys.readouterr().out
        assert "(default: runs/predict)" in text and "(default: None)" not in text
        assert "(default: False)" not in text and "(default: the model's)" in text


def test_quantize_runs_with_the_old_flag(tiny_onnx, tmp_path, caplog):
    out = tmp_path / "m-fp16.onnx"
    with caplog.at_level(logging.WARNING, logger="scratchdet"):
        assert main(["quantize", "--onnx", str(tiny_onnx), "--precision", "fp16", "--out", str(out)]) == 0
    assert out.stat().st_size > 0 and "--onnx is deprecated" in caplog.text


@pytest.fixture(scope="module")
def tiny_onnx(tiny_checkpoint, tmp_path_factory):
    from scratchdet.export.onnx_export import ExportOptions, export_onnx
    from scratchdet.models.checkpoint import load_model

    model, checkpoint = load_model(tiny_checkpoint)
    return export_onnx(model, checkpoint["class_names"], tmp_path_factory.mktemp("q") / "model.onnx",
                       ExportOptions()).path
