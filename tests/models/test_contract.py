import json
from dataclasses import fields

import pytest

from scratchdet.models.config import PostprocessConfig
from scratchdet.models.contract import (
    METADATA_KEYS,
    POSTPROCESS_KEYS,
    SIDECAR_KEYS,
    ContractError,
    engine_name,
    read_sidecar,
    version_tuple,
)


def test_postprocess_keys_are_the_config_fields_so_a_new_setting_reaches_the_metadata():
    assert tuple(f.name for f in fields(PostprocessConfig)) == POSTPROCESS_KEYS
    assert set(POSTPROCESS_KEYS) <= set(METADATA_KEYS)


def test_one_engine_name_per_model_and_precision():
    assert engine_name("model-int8-tensorrt", "int8") == engine_name("model", "int8") == "model-int8.engine"
    assert engine_name("model-fp16", "fp16") == "model-fp16.engine"
    assert engine_name("bccd-fp32", "fp32") == "bccd-fp32.engine"
    with pytest.raises(ValueError, match="unknown precision 'bf16'"):
        engine_name("model", "bf16")


def test_version_tuple_reads_trtexec_and_python_versions():
    assert version_tuple("10.3.0.30") == version_tuple("10.3.0") == (10, 3, 0)
    assert version_tuple("11") == (11, 0, 0)
    with pytest.raises(ValueError, match="cannot read a TensorRT version from 'ten'"):
        version_tuple("ten")


def test_sidecar_without_its_keys_or_not_json_is_refused_naming_the_file(tmp_path):
    engine = tmp_path / "model-fp16.engine"
    with pytest.raises(FileNotFoundError, match="no sidecar model-fp16.json"):
        read_sidecar(engine)
    engine.with_suffix(".json").write_text("{not json")
    with pytest.raises(ContractError, match="model-fp16.json: not a JSON sidecar"):
        read_sidecar(engine)
    engine.with_suffix(".json").write_text(json.dumps({"tensorrt_version": "10.3.0"}))
    with pytest.raises(ContractError, match=r"sidecar lacks \['gpu_name'"):
        read_sidecar(engine)
    engine.with_suffix(".json").write_text(json.dumps(dict.fromkeys(SIDECAR_KEYS, "x")))
    assert read_sidecar(engine)["gpu_name"] == "x"
