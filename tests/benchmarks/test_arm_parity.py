"""The shipped ONNX models give the same detections on emulated aarch64 cores as on this host.

Run with `make test-arm` (pytest -m arm). Set-up failures (no qemu package, no network) skip with the
reason; a mismatch fails.
"""

import onnx
import pytest
from onnx import numpy_helper

from scratchdet.benchmarks.arm_emulation import CORES, ArmSetupError, ensure_qemu, ensure_sysroot, run_emulated
from scratchdet.benchmarks.portability import max_differences, near_match_fraction, parity_problems
from scratchdet.models.boxes import tolerance
from scratchdet.models.inference.onnxruntime_backend import create_session
from scratchdet.train.data.load import load_dataset
from scratchdet.train.evaluate import dataset_batch

pytestmark = pytest.mark.arm


@pytest.fixture(scope="module")
def emulation():
    try:
        ensure_qemu()
        ensure_sysroot()
    except ArmSetupError as error:
        pytest.skip(f"aarch64 emulation unavailable: {error}")


@pytest.fixture(scope="module")
def images(trained_data):
    return dataset_batch(load_dataset(trained_data, "val").records[:4], 128)


def host_outputs(model, images):
    session = create_session(model, threads=1)
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, {"images": images})))


@pytest.mark.parametrize("core", list(CORES))
@pytest.mark.parametrize("kind", ["fp32", "int8"])
def test_emulated_core_matches_host(emulation, trained_models, images, core, kind):
    host = host_outputs(trained_models[kind], images)
    arm = run_emulated(trained_models[kind], images, core)
    box, score = max_differences(host, arm)
    exact = not parity_problems(host, arm, exact=True)
    print(f"{kind} {core}: detections {host['num_dets'].ravel().tolist()}, max box diff {box:.2e} px, "
          f"max score diff {score:.2e}, bit-exact {exact}, near-matched {near_match_fraction(host, arm):.3f}")
    if kind == "fp32":
        assert parity_problems(host, arm, exact=False) == []
    else:
        # Bit-exact for some models (the 40-epoch demo model), not for this 3-epoch one: ORT's QLinearAdd
        # rounds a value 4.4e-6 above a tie differently on x86 (docs/results/arm.md; the test below traces it), and 7%
        # of the 800 detections then have no partner within 1 px / 0.02 score. Required: equal counts and
        # 90% found again.
        assert (host["num_dets"] == arm["num_dets"]).all()
        assert near_match_fraction(host, arm) >= tolerance("arm-int8").matched


def test_a_perturbed_model_fails_the_parity_check(emulation, trained_models, images, tmp_path):
    model = onnx.load(str(trained_models["fp32"]))
    conv = next(n for n in model.graph.node if n.op_type == "Conv")  # the stem: every output depends on it
    weight = next(t for t in model.graph.initializer if t.name == conv.input[1])
    values = numpy_helper.to_array(weight).copy()
    values.flat[0] += 0.5  # one weight changed
    weight.CopyFrom(numpy_helper.from_array(values, weight.name))
    perturbed = tmp_path / "perturbed.onnx"
    onnx.save(model, str(perturbed))
    arm = run_emulated(perturbed, images, "cortex-a72")
    assert parity_problems(host_outputs(trained_models["fp32"], images), arm, exact=False) != []
    assert parity_problems(host_outputs(perturbed, images), arm, exact=False) == []  # the check itself is sound


def test_int8_differences_are_traced_to_the_first_differing_layer(emulation, trained_models, trained_data, images):
    from scratchdet.benchmarks.studies.arm_divergence import layer_divergence

    differences = layer_divergence(trained_models["int8"], trained_data, "cortex-a76", images=len(images))
    model = onnx.load(str(trained_models["int8"]))
    assert [d.name for d in differences] == [n.output[0] for n in model.graph.node if n.op_type == "QuantizeLinear"]
    first = next((d for d in differences if d.differing), None)
    print(f"first divergent quantised tensor: {first.name if first else 'none'}")
    host, arm = host_outputs(trained_models["int8"], images), run_emulated(trained_models["int8"], images, "cortex-a76")
    if parity_problems(host, arm, exact=False):  # detections differ beyond float rounding...
        assert first is not None  # ...so some INT8 kernel's output must differ, and the tool names it
