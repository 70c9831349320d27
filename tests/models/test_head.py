import pytest
import torch

from scratchdet.models.head import SSDHead


@pytest.mark.parametrize("bn", [True, False])
def test_background_prior_sets_the_initial_softmax(bn):
    head = SSDHead([8, 16], [4, 6], num_classes=5, bn=bn).eval()
    head.init_background_prior(0.99)
    for conv in head.classification.convs:
        torch.nn.init.zeros_(conv[0].weight)  # leaves only the bias: BN beta, or the conv bias without BN
    features = [torch.randn(2, 8, 4, 4), torch.randn(2, 16, 2, 2)]
    _, logits = head(features)
    assert logits.shape == (2, 4 * 4 * 4 + 2 * 2 * 6, 5)
    probabilities = logits.softmax(-1)
    assert torch.allclose(probabilities[..., 0], torch.tensor(0.99), atol=1e-4)
    assert torch.allclose(probabilities[..., 1:], torch.tensor(0.0025), atol=1e-5)


def test_background_prior_out_of_range_is_refused():
    head = SSDHead([8], [4], num_classes=3, bn=True)
    with pytest.raises(ValueError, match=r"background prior must be in \(0, 1\), got 1.0"):
        head.init_background_prior(1.0)
