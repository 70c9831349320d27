from scratchdet.cli import main


def test_train_seed_flag_overrides_the_config_seed(monkeypatch, tmp_path):
    seen = {}

    class FakeTrainer:
        rank, best_map = 0, 0.5

        def __init__(self, model_config, train_config, data, out):
            seen["seed"], seen["epochs"] = train_config.seed, train_config.epochs

        def fit(self):
            return tmp_path

    monkeypatch.setattr("scratchdet.train.cli.Trainer", FakeTrainer)
    assert main(["train", "--config", "tiny", "--data", "d", "--out", str(tmp_path), "--seed", "3"]) == 0
    assert seen == {"seed": 3, "epochs": 40}
    assert main(["train", "--config", "tiny", "--data", "d", "--out", str(tmp_path)]) == 0
    assert seen["seed"] == 0  # train.seed of the config
