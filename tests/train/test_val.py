import json

import numpy as np

from scratchdet.cli import main


def test_val_writes_metrics_and_plots_to_an_incremented_folder(tiny_checkpoint, synth_data, tmp_path, capsys):
    arguments = ["val", "--model", str(tiny_checkpoint), "--data", str(synth_data), "--conf", "0.3",
                 "--save-dir", str(tmp_path / "val")]
    assert main(arguments) == 0
    assert main(arguments) == 0
    out = capsys.readouterr().out
    assert "at confidence 0.3: precision" in out and f"results in {tmp_path / 'val2'}" in out
    metrics = json.loads((tmp_path / "val2" / "metrics.json").read_text())
    assert metrics["at_conf"]["conf"] == 0.3 and 0 <= metrics["at_conf"]["all"]["f1"] <= 1
    counts = np.array(metrics["confusion_matrix"]["counts"])
    assert counts.shape == (len(metrics["per_class"]) + 1,) * 2
    for name in ("pr_curve.png", "confusion_matrix.png"):
        assert (tmp_path / "val2" / name).stat().st_size > 10_000
