"""The OpenVINO backend: same detections as ONNX Runtime on an FP32 model, stated precision, clear refusals."""

from __future__ import annotations

import numpy as np
import pytest

from scratchdet.models.inference.formats import open_backend
from scratchdet.models.inference.onnxruntime_backend import OnnxBackend
from scratchdet.runtime.detector import Detector

pytestmark = pytest.mark.openvino
pytest.importorskip("openvino", reason="OpenVINO is in the dev extra: pip install -e '.[dev]'")


def test_fp32_onnx_on_openvino_matches_onnxruntime(trained_models):
    images = np.random.default_rng(0).uniform(0, 255, (3, 3, 128, 128)).astype(np.float32)
    reference = OnnxBackend(trained_models["fp32"], threads=2).infer(images)
    with Detector(trained_models["fp32"], conf=0.0, runtime="openvino", threads=2) as detector:
        backend = detector.backend
        assert (backend.name, backend.precision, backend.provider) == ("openvino", "fp32/f32", "CPU, f32")
        for batch in (images, images[:1]):  # a second batch size compiles a second model
            got = backend.infer(batch)
            for a, b in zip(reference, got):
                assert len(a) == len(b)
                np.testing.assert_array_equal(a.class_ids, b.class_ids)
                np.testing.assert_allclose(a.scores, b.scores, atol=1e-4)
                np.testing.assert_allclose(a.boxes, b.boxes, atol=0.05)
        assert sorted(backend.requests) == [1, 3]


def test_openvino_refuses_what_it_cannot_run(trained_models):
    with pytest.raises(ValueError, match=r"runtime 'openvino' does not run \.pt files"):
        open_backend(trained_models["pt"], "openvino")
    with pytest.raises(ValueError, match="unknown OpenVINO precision hint 'fp16'"):
        open_backend(trained_models["fp32"], "openvino", precision_hint="fp16")
