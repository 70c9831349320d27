"""Five hand-made priors (cx, cy, w, h): a 2x2 grid of half-size cells and one large centred prior."""

import torch

PRIORS = torch.tensor([
    [0.25, 0.25, 0.5, 0.5],
    [0.75, 0.25, 0.5, 0.5],
    [0.25, 0.75, 0.5, 0.5],
    [0.75, 0.75, 0.5, 0.5],
    [0.5, 0.5, 0.9, 0.9],
])
