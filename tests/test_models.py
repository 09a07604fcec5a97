"""Proxy-task networks: the paper's parameter counts, padding, determinism and trainability."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from nos.training.models import (  # noqa: E402
    MODELS,
    ConvNet,
    DigitsMLP,
    Mnist1dCNN,
    SameConv2d,
    build_model,
    count_parameters,
    init_weights,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize(
    ("width", "total", "trainable"),
    [(32, 95_434, 94_986), (48, 212_266, 211_594)],  # paper-spec §5.2 (Keras counts)
)
def test_convnet_parameter_counts(width: int, total: int, trainable: int) -> None:
    model = ConvNet(width)
    assert count_parameters(model) == (total, trainable)
    # torch's own count is the trainable one; the rest is BN's running mean and variance.
    assert sum(p.numel() for p in model.parameters()) == trainable
    bn_state = sum(
        m.running_mean.numel() * 2 for m in model.modules() if isinstance(m, nn.BatchNorm2d)
    )
    assert trainable + bn_state == total


def test_convnet_shapes_and_keras_settings() -> None:
    model = ConvNet(8, generator=_gen(0)).eval()
    assert model(torch.randn(5, 3, 32, 32)).shape == (5, 10)
    assert model.features(torch.randn(1, 3, 32, 32)).shape == (1, 32, 8, 8)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == 3 and all(m.eps == 1e-3 and m.momentum == pytest.approx(0.01) for m in bns)
    assert model.dropout.p == 0.2
    assert all(isinstance(m, nn.SiLU) for m in (blk[2] for blk in model.features))
    assert ConvNet(8, 102)(torch.randn(2, 3, 32, 32)).shape == (2, 102)


def test_same_conv_pads_like_tensorflow() -> None:
    conv = SameConv2d(2, 3, 3, stride=2)
    x = torch.randn(1, 2, 32, 32)
    y = conv(x)
    assert y.shape == (1, 3, 16, 16)
    # Keras pads an even input only after it for stride 2: rows/cols 0..2 feed output 0.
    expected = F.conv2d(F.pad(x, (0, 1, 0, 1)), conv.weight, conv.bias, stride=2)
    torch.testing.assert_close(y, expected)
    plain = SameConv2d(2, 3, 3)
    torch.testing.assert_close(plain(x), F.conv2d(x, plain.weight, plain.bias, padding=1))
    assert SameConv2d(2, 3, 3, stride=2)(torch.randn(1, 2, 7, 7)).shape == (1, 3, 4, 4)


@pytest.mark.parametrize(
    "factory",
    [
        lambda g: ConvNet(16, generator=g),
        lambda g: DigitsMLP(generator=g),
        lambda g: Mnist1dCNN(generator=g),
    ],
)
def test_init_is_deterministic_and_private(factory) -> None:
    torch.manual_seed(0)
    state = torch.get_rng_state()
    a, b, c = factory(_gen(7)), factory(_gen(7)), factory(_gen(8))
    assert torch.equal(torch.get_rng_state(), state)  # the global stream was not consumed
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa)


def test_init_follows_keras_defaults() -> None:
    model = ConvNet(32, generator=_gen(1))
    conv = model.features[1][0]
    fan_in, fan_out = 32 * 9, 64 * 9
    limit = (6 / (fan_in + fan_out)) ** 0.5
    assert conv.weight.abs().max() <= limit and conv.weight.abs().max() > 0.9 * limit
    assert torch.count_nonzero(conv.bias) == 0 and torch.count_nonzero(model.classifier.bias) == 0
    bn = model.features[0][1]
    assert torch.all(bn.weight == 1) and torch.all(bn.running_var == 1)
    with torch.no_grad():
        bn.running_mean.add_(3)
    init_weights(model, _gen(1))
    assert torch.count_nonzero(bn.running_mean) == 0


def test_small_models_shapes() -> None:
    assert DigitsMLP()(torch.randn(4, 8, 8, 1)).shape == (4, 10)
    net = Mnist1dCNN()
    assert net(torch.randn(4, 40)).shape == (4, 10)
    assert net(torch.randn(4, 1, 40)).shape == (4, 10)
    assert Mnist1dCNN(length=41)(torch.randn(2, 41)).shape == (2, 10)


def test_build_model() -> None:
    assert {"cifar10", "flowers102", "digits", "mnist1d"} <= set(MODELS)
    a = build_model("cifar10", seed=3, width=48)
    assert isinstance(a, ConvNet) and count_parameters(a).total == 212_266
    b = build_model("cifar10", seed=3, width=48)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters(), strict=True))
    assert build_model("flowers102", seed=0)(torch.randn(1, 3, 32, 32)).shape == (1, 102)
    with pytest.raises(ValueError, match="no model for data set 'svhn'"):
        build_model("svhn")


def test_digits_mlp_learns() -> None:
    from nos.training.data import load_digits, to_tensor

    ds = load_digits()
    x, y = to_tensor(ds.train.x), torch.from_numpy(ds.train.y)
    model = build_model("digits", seed=0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = F.cross_entropy(model(x), y).item()
    for _ in range(60):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
    assert loss.item() < first / 4
