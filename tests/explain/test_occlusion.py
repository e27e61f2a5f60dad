from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from studylib.explain.occlusion import occlusion, occlusion_positions, window_matrix


class _Flat(nn.Module):
    """A two-class model on raw (n, H, W) images."""

    def __init__(self, size: int):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.head = nn.Linear(4 * size * size, 2)

    def forward(self, images):
        return self.head(torch.relu(self.conv(images[:, None])).flatten(1))


@pytest.mark.parametrize(("patch", "stride"), [(4, 4), (6, 2), (5, 3)])
def test_probability_drop_equals_captum_occlusion(patch, stride):
    captum = pytest.importorskip("captum.attr")
    torch.manual_seed(0)
    size = 16
    net = _Flat(size).eval()
    rng = np.random.default_rng(0)
    images = rng.normal(size=(5, size, size)).astype(np.float32)
    labels = np.array([0, 1, 1, 0, 1])
    ours = occlusion(net, images, labels, patch=patch, stride=stride, fill=-1.5, batch_size=7)

    def probability(x):
        return torch.softmax(net(x), dim=1)

    theirs = captum.Occlusion(probability).attribute(
        torch.from_numpy(images), sliding_window_shapes=(patch, patch), strides=(stride, stride), baselines=-1.5,
        target=torch.from_numpy(labels)).numpy()
    if (size - patch) % stride == 0:
        np.testing.assert_allclose(ours["probability"], theirs, atol=1e-6)
    else:  # our last position covers the edge captum leaves out: equal where captum's windows alone cover a pixel
        covered = (size - patch) // stride * stride + patch
        inner = min(covered, size - patch)  # pixels no extra window reaches
        np.testing.assert_allclose(ours["probability"][:, :inner, :inner], theirs[:, :inner, :inner], atol=1e-6)


def test_a_per_pixel_fill_equals_captum_with_an_image_baseline():
    """The "mean" occluder of a per-pixel normalised model writes the mean image, not one number, into the square."""
    captum = pytest.importorskip("captum.attr")
    torch.manual_seed(1)
    size, patch, stride = 12, 4, 4
    net = _Flat(size).eval()
    rng = np.random.default_rng(1)
    images = rng.normal(size=(4, size, size)).astype(np.float32)
    labels = np.array([1, 0, 1, 0])
    fill = rng.normal(size=(size, size)).astype(np.float32)
    ours = occlusion(net, images, labels, patch=patch, stride=stride, fill=fill, batch_size=5)
    theirs = captum.Occlusion(lambda x: torch.softmax(net(x), dim=1)).attribute(
        torch.from_numpy(images), sliding_window_shapes=(patch, patch), strides=(stride, stride),
        baselines=torch.from_numpy(fill)[None], target=torch.from_numpy(labels)).numpy()
    np.testing.assert_allclose(ours["probability"], theirs, atol=1e-6)
    constant = occlusion(net, images, labels, patch=patch, stride=stride, fill=np.full((size, size), 0.5), batch_size=5)
    scalar = occlusion(net, images, labels, patch=patch, stride=stride, fill=0.5, batch_size=5)
    np.testing.assert_array_equal(constant["probability"], scalar["probability"])


def test_the_occlusion_peak_sits_on_the_square_that_decides_the_label():
    rng = np.random.default_rng(1)
    size, n = 16, 400
    labels = rng.integers(0, 2, n)
    images = rng.normal(size=(n, size, size)).astype(np.float32)
    images[:, 3:7, 9:13] += np.where(labels == 1, 1.5, -1.5)[:, None, None]  # the planted square
    torch.manual_seed(1)
    net = nn.Sequential(nn.Flatten(), nn.Linear(size * size, 2))
    model = net
    optimiser = torch.optim.Adam(net.parameters(), lr=0.02)
    x, y = torch.from_numpy(images[:300]), torch.from_numpy(labels[:300])
    for _ in range(300):
        optimiser.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimiser.step()
    result = occlusion(model, images[300:], labels[300:], patch=4, stride=1, fill=0.0)
    assert result["baseline"].mean() > 0.8  # the model learned the square
    for kind in ("probability", "accuracy"):
        group = result[kind].mean(axis=0)
        peak = np.unravel_index(np.argmax(group), group.shape)
        assert 3 <= peak[0] < 7 and 9 <= peak[1] < 13, (kind, peak)
        inside = np.zeros_like(group, dtype=bool)
        inside[3:7, 9:13] = True
        assert group[inside].mean() > 5 * np.abs(group[~inside]).mean()


def test_positions_cover_every_pixel_and_windows_average_them():
    positions = occlusion_positions((10, 10), 4, 4)
    assert positions[:, 0].max() == 6 and len(positions) == 9  # 0, 4 and the extra 6
    matrix = window_matrix((10, 10), 4, positions)
    np.testing.assert_allclose(np.ones(len(positions)) @ matrix, 1.0)  # a uniform drop stays uniform
    with pytest.raises(ValueError, match="must fit"):
        occlusion_positions((10, 10), 12, 1)
