import numpy as np
import onnxruntime as ort
import pytest
from support import onnx_builders as b


@pytest.mark.slow
def test_resnet50_has_torchvision_parameter_count():
    assert b.parameter_count(b.resnet50()) == 25_557_032


@pytest.mark.slow  # over 0.5 s: runs in the full suite, not the quick loop
def test_inception_v3_has_torchvision_parameter_count_without_aux_head():
    assert b.parameter_count(b.inception_v3()) == 23_834_568


def test_seeded_weights_are_reproducible_and_seed_dependent():
    first = b.tiny(seed=3).graph.initializer[0]
    again = b.tiny(seed=3).graph.initializer[0]
    other = b.tiny(seed=4).graph.initializer[0]
    assert first.raw_data == again.raw_data
    assert first.raw_data != other.raw_data


@pytest.mark.slow
def test_inception_reduces_299_to_one_by_one_before_the_head():
    sess = ort.InferenceSession(b.inception_v3().SerializeToString())
    x = np.zeros((1, 3, 299, 299), np.float32)
    out = sess.run(None, {"x": x})[0]
    assert out.shape == (1, 1000)
    assert np.isfinite(out).all()
