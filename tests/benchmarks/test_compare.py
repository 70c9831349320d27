import json
import math

import matplotlib.image
import pytest

from scratchdet.benchmarks import compare as compare_module
from scratchdet.benchmarks.compare import (
    SeedRun,
    paired_difference,
    read_seed_run,
    run_folder,
    t_quantile,
    t_two_sided_probability,
    train_seed,
)
from scratchdet.cli import main

CONFIG = """model:
  name: cmp_test
  backbone: root_resnet18
  input_size: 96
  width: 0.25
  extra_blocks: 1
  last_conv: false
  priors:
    min_sizes: [10, 30, 60]
    max_sizes: [30, 60, 90]
    aspect_ratios: [[2], [2, 3], [2]]
    steps: null
train:
  epochs: 1
  batch_size: 8
  lr: 0.02
  warmup_iters: 5
  schedule: cosine
  workers: 0
"""


@pytest.mark.parametrize(("probability", "df", "expected"), [
    (0.975, 1, 12.7062), (0.975, 2, 4.3027), (0.975, 4, 2.7764), (0.975, 9, 2.2622), (0.975, 30, 2.0423),
    (0.8, 2, 1.0607), (0.8, 4, 0.9410), (0.95, 5, 2.0150), (0.995, 3, 5.8409),
])
def test_t_quantiles_match_the_printed_table(probability, df, expected):
    assert t_quantile(probability, df) == pytest.approx(expected, abs=1e-4)


def test_t_distribution_limits_and_bad_arguments():
    assert t_two_sided_probability(0.0, 3) == 0.0
    assert t_two_sided_probability(1.0, 1) == pytest.approx(0.5)  # Cauchy: P(|T| <= 1) = 1/2
    assert t_quantile(0.975, 400) == pytest.approx(1.966, abs=1e-3)  # tends to the normal 1.960
    with pytest.raises(ValueError, match="degrees of freedom"):
        t_two_sided_probability(1.0, 0)
    with pytest.raises(ValueError, match="quantile probability"):
        t_quantile(1.0, 3)


def test_paired_difference_hand_computed_worse():
    result = paired_difference([0.5, 0.6, 0.7], [0.4, 0.55, 0.6])
    # differences -0.1, -0.05, -0.1: mean -1/12, sd sqrt(1/1200), standard error sd / sqrt(3)
    error = math.sqrt(1 / 1200) / math.sqrt(3)
    assert result.mean == pytest.approx(-1 / 12)
    assert result.sd == pytest.approx(math.sqrt(1 / 1200))
    assert result.ci_low == pytest.approx(-1 / 12 - 4.3027 * error, abs=1e-4)
    assert result.ci_high == pytest.approx(-1 / 12 + 4.3027 * error, abs=1e-4)
    assert result.minimal_detectable == pytest.approx((4.3027 + 1.0607) * error, abs=1e-4)
    assert result.verdict == "worse"


def test_paired_difference_better_noise_and_identical():
    assert paired_difference([0.5, 0.6, 0.7], [0.6, 0.65, 0.8]).verdict == "better"
    noisy = paired_difference([0.5, 0.6, 0.7], [0.6, 0.5, 0.71])  # differences +0.1, -0.1, +0.01
    assert noisy.ci_low < 0 < noisy.ci_high and noisy.verdict == "no detectable difference"
    same = paired_difference([0.3, 0.9], [0.3, 0.9])
    assert (same.mean, same.sd, same.ci_low, same.ci_high) == (0, 0, 0, 0)
    assert same.verdict == "no detectable difference"


def test_paired_difference_refuses_unpaired_or_single_seed():
    with pytest.raises(ValueError, match="as many baseline as candidate"):
        paired_difference([0.1, 0.2], [0.1])
    with pytest.raises(ValueError, match="at least 2 seeds"):
        paired_difference([0.1], [0.2])


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "cmp_test.yaml"
    path.write_text(CONFIG)
    return path


def test_run_folders_differ_by_recipe_and_seed_not_by_file(tmp_path, config_file, synth_data):
    copy = tmp_path / "copy.yaml"
    copy.write_text("# same recipe, another file\n" + CONFIG)
    changed = tmp_path / "changed.yaml"
    changed.write_text(CONFIG.replace("lr: 0.02", "lr: 0.03"))
    folder = run_folder(tmp_path, config_file, synth_data, 2, 0)
    assert folder == run_folder(tmp_path, copy, synth_data, 2, 0)
    assert folder.name == "seed0" and folder.parent.name.startswith("cmp_test-")
    assert folder.parent != run_folder(tmp_path, changed, synth_data, 2, 0).parent
    assert folder.parent != run_folder(tmp_path, config_file, synth_data, 3, 0).parent
    assert folder != run_folder(tmp_path, config_file, synth_data, 2, 1)
    spelled_out = tmp_path / "defaults.yaml"  # a default written out, as a field added later would be
    spelled_out.write_text(CONFIG.replace("  workers: 0\n", "  workers: 0\n  momentum: 0.9\n  ema_decay: null\n"))
    assert run_folder(tmp_path, spelled_out, synth_data, 2, 0) == folder


@pytest.mark.slow
def test_compare_config_with_itself_trains_once_and_finds_no_difference(tmp_path, config_file, synth_data,
                                                                          monkeypatch):
    out, runs = tmp_path / "report", tmp_path / "runs"
    code = main(["compare", "--baseline-config", str(config_file), "--candidate-config", str(config_file),
                 "--data", str(synth_data), "--seeds", "2", "--runs", str(runs), "--out", str(out), "--no-speed"])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert report["verdict"] == "no detectable difference"
    assert [r["seed"] for r in report["candidate"]["runs"]] == [0, 1]
    assert report["difference"]["map50"]["mean"] == 0.0  # same recipe and seed: both arms read one run folder
    baseline_maps = [r["map50"] for r in report["baseline"]["runs"]]
    assert all(0 <= m <= 1 for m in baseline_maps)
    assert all(r["cpu_s"] > 0 for r in report["baseline"]["runs"])  # summed from the epoch records
    assert len(list(runs.glob("*/seed*"))) == 2  # one folder per seed, shared by both arms
    assert matplotlib.image.imread(out / "curves.png").shape[2] in (3, 4)
    assert "no detectable difference" in (out / "report.md").read_text()
    assert "training CPU time (user + sys) mean" in (out / "report.md").read_text()

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr("scratchdet.train.trainer.Trainer.fit", no_training)
    assert train_seed(config_file, synth_data, None, 1, runs).map50 == report["baseline"]["runs"][1]["map50"]


def test_compare_exit_code_is_2_for_a_worse_candidate(tmp_path, monkeypatch, capsys):
    maps = {("a.yaml", 0): 0.60, ("a.yaml", 1): 0.70, ("a.yaml", 2): 0.65,
            ("b.yaml", 0): 0.50, ("b.yaml", 1): 0.62, ("b.yaml", 2): 0.52}

    def fake_train(config, data, epochs, seed, root):
        value = maps[(str(config), seed)]
        return SeedRun(seed, str(tmp_path / f"{config}{seed}"), value, value / 2, value, [(1, value)])

    monkeypatch.setattr(compare_module, "train_seed", fake_train)
    monkeypatch.setattr(compare_module, "validate_inputs", lambda *args: None)  # the configs are made up
    code = main(["compare", "--baseline-config", "a.yaml", "--candidate-config", "b.yaml", "--data", "d",
                 "--seeds", "3", "--out", str(tmp_path / "out"), "--no-speed"])
    assert code == 2
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["difference"]["map50"]["mean"] == pytest.approx(-0.1033, abs=1e-4)
    assert report["baseline"]["map50"]["spread"] == pytest.approx(0.10)
    assert "verdict: worse" in capsys.readouterr().out


def test_candidate_first_seed_pairs_other_seeds(tmp_path, monkeypatch):
    def fake_train(config, data, epochs, seed, root):
        return SeedRun(seed, str(tmp_path / f"{config}{seed}"), 0.5 + seed / 100, 0.2, 0.5, [])

    monkeypatch.setattr(compare_module, "train_seed", fake_train)
    monkeypatch.setattr(compare_module, "validate_inputs", lambda *args: None)  # the configs are made up
    assert main(["compare", "--baseline-config", "a.yaml", "--candidate-config", "a.yaml", "--data", "d",
                 "--seeds", "2", "--candidate-first-seed", "3", "--out", str(tmp_path / "out"), "--no-speed"]) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert [r["seed"] for r in report["baseline"]["runs"]] == [0, 1]
    assert [r["seed"] for r in report["candidate"]["runs"]] == [3, 4]
    assert report["difference"]["map50"]["mean"] == pytest.approx(0.03)
    assert "| 0, 3 |" in (tmp_path / "out" / "report.md").read_text()


@pytest.mark.parametrize(("change", "message"), [
    ({"--candidate-config": "tnyi"}, "tnyi: config not found"),
    ({"--data": "missing-data"}, "missing-data"),
])
def test_compare_checks_configs_and_data_before_any_training(tmp_path, config_file, synth_data, monkeypatch, caplog,
                                                             change, message):
    def no_training(*args, **kwargs):
        raise AssertionError("training started before the inputs were checked")

    monkeypatch.setattr("scratchdet.train.trainer.Trainer.__init__", no_training)
    monkeypatch.setattr(compare_module, "train_seed", no_training)
    options = {"--baseline-config": str(config_file), "--candidate-config": str(config_file),
               "--data": str(synth_data), "--runs": str(tmp_path / "runs"), "--out": str(tmp_path / "report")}
    options.update({key: str(tmp_path / value) if key == "--data" else value for key, value in change.items()})
    assert main(["compare", *[x for pair in options.items() for x in pair], "--seeds", "2", "--no-speed"]) == 1
    assert message in caplog.text
    assert not (tmp_path / "runs").exists() and not (tmp_path / "report").exists()


def test_compare_refuses_a_single_seed(tmp_path):
    assert main(["compare", "--baseline-config", "a", "--candidate-config", "b", "--data", "d", "--seeds", "1",
                 "--out", str(tmp_path)]) == 1


def test_a_diverged_run_counts_as_zero(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "diverged.json").write_text(json.dumps({"error": "20 consecutive non-finite losses",
                                                      "curve": [[5, 0.1]]}))
    run = read_seed_run(folder, 3)
    assert (run.seed, run.map50, run.curve, run.diverged) == (3, 0.0, [(5, 0.1)], "20 consecutive non-finite losses")
