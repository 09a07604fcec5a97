"""uint8-resident images: the lookup table and the augmentation match the float pipeline."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from nos.training.data import augment_batch, channel_stats, normalize, to_tensor  # noqa: E402
from nos.training.images import Augmenter, Pixels, to_uint8_nchw  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _images(n: int = 16, h: int = 32, w: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def test_pixels_are_the_float_pipeline_bit_for_bit():
    x = _images()
    u8 = to_uint8_nchw(x)
    assert u8.dtype == torch.uint8 and u8.shape == (16, 3, 32, 32)
    assert torch.equal(Pixels.scaled(3)(u8), to_tensor(x))
    mean, std = channel_stats(x)
    assert torch.equal(Pixels.normalized(mean, std)(u8), to_tensor(normalize(x, mean, std)))
    with pytest.raises(ValueError, match="uint8"):
        Pixels.scaled(3)(u8.float())


@pytest.mark.parametrize(
    ("shape", "options"),
    [
        ((32, 32), {}),
        ((12, 10), {}),  # not square: rows and columns reflect separately
        ((32, 32), {"flip": False}),
        ((32, 32), {"cutout": 0}),
        ((9, 9), {"pad": 0, "cutout": 4}),
    ],
)
def test_augmenter_draws_and_output_equal_augment_batch(shape, options):
    x = _images(24, *shape, seed=1)
    mean, std = channel_stats(x)
    floats = to_tensor(normalize(x, mean, std))
    augment = Augmenter(Pixels.normalized(mean, std), torch.Generator().manual_seed(7), **options)
    reference = torch.Generator().manual_seed(7)
    u8 = to_uint8_nchw(x)
    for _ in range(3):  # the generators stay in step batch after batch
        expected = augment_batch(floats, reference, **options)
        got = augment(u8)
        assert torch.equal(got, expected)
    assert torch.equal(augment.generator.get_state(), reference.get_state())


def test_augmenter_errors():
    pixels = Pixels.scaled(3)
    with pytest.raises(ValueError, match="even"):
        Augmenter(pixels, torch.Generator(), cutout=3)
    with pytest.raises(ValueError, match="NCHW"):
        Augmenter(pixels, torch.Generator())(torch.zeros(3, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match="larger"):
        Augmenter(pixels, torch.Generator())(torch.zeros(2, 3, 4, 4, dtype=torch.uint8))
