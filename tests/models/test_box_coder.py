import torch

from scratchdet.models.box_coder import BoxCoder, cxcywh_to_xyxy


def test_box_equal_to_its_prior_encodes_to_zeros():
    priors = torch.tensor([[0.5, 0.4, 0.2, 0.1], [0.1, 0.9, 0.05, 0.3]])
    offsets = BoxCoder().encode(cxcywh_to_xyxy(priors), priors)
    # float32 log of a ratio near 1, divided by the 0.2 variance: about 1e-6 of rounding
    torch.testing.assert_close(offsets, torch.zeros_like(offsets), atol=1e-5, rtol=0)


def test_encode_uses_variances():
    prior = torch.tensor([[0.5, 0.5, 0.2, 0.2]])
    box = torch.tensor([[0.42, 0.4, 0.62, 0.6]])  # centre shifted by +0.02 in x, same size
    offsets = BoxCoder((0.1, 0.2)).encode(box, prior)
    torch.testing.assert_close(offsets, torch.tensor([[0.02 / (0.2 * 0.1), 0.0, 0.0, 0.0]]), atol=1e-5, rtol=0)


def test_encode_decode_round_trip():
    generator = torch.Generator().manual_seed(0)
    priors = torch.rand(100, 4, generator=generator) * 0.5 + 0.1
    top_left = torch.rand(100, 2, generator=generator) * 0.5
    boxes = torch.cat([top_left, top_left + torch.rand(100, 2, generator=generator) * 0.4 + 0.01], dim=1)
    coder = BoxCoder()
    torch.testing.assert_close(coder.decode(coder.encode(boxes, priors), priors), boxes, atol=1e-5, rtol=0)
