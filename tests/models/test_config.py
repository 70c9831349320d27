import pytest

from scratchdet.models.config import ConfigError, load_model_config


def write(tmp_path, text):
    path = tmp_path / "model.yaml"
    path.write_text(text)
    return path


def test_shipped_configs_load_by_name():
    assert load_model_config("tiny").name == "tiny"
    assert load_model_config("ssd300_root_resnet34").backbone == "root_resnet34"


def test_unknown_key_is_rejected_naming_key_and_file(tmp_path):
    path = write(tmp_path, "model:\n  name: x\n  widht: 0.5\n")
    with pytest.raises(ConfigError, match=r"model\.widht") as error:
        load_model_config(path)
    assert str(path) in str(error.value)


def test_wrong_type_is_rejected_with_expected_and_found(tmp_path):
    path = write(tmp_path, "model:\n  name: x\n  input_size: big\n")
    with pytest.raises(ConfigError, match=r"model\.input_size' expects int, got str"):
        load_model_config(path)


def test_nested_prior_values_are_checked(tmp_path):
    path = write(tmp_path, "model:\n  name: x\n  priors:\n    min_sizes: [a]\n")
    with pytest.raises(ConfigError, match=r"model\.priors\.min_sizes\[0\]"):
        load_model_config(path)


def test_missing_config_lists_the_shipped_ones():
    with pytest.raises(ConfigError, match="shipped configs: .*tiny"):
        load_model_config("no_such_config")
