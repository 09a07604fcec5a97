"""Networks of the bench's tasks (``nos bench``), with deterministic initialisation.

Like :mod:`nos.training.models`, every network draws its initial weights only from the
``torch.Generator`` passed in (Glorot-uniform kernels and zero biases through
:func:`~nos.training.models.init_weights`; embeddings and LSTMs as documented below), so the
same seed gives identical weights and building a model leaves torch's global random state
untouched.

* :class:`LinearModel` - an ``nn.Linear`` on flat inputs: logistic (softmax) regression or
  least squares;
* :class:`TwoLayerMLP` - ``nn.Sequential(Linear, activation, Linear)``: the 2-layer networks
  that plane search handles (:func:`nos.optim.plane_search.plane_search_for`);
* :class:`MLP` - a deeper multilayer perceptron with swish activations;
* :class:`SmallCNN` - two conv -> ReLU -> max-pool blocks and a linear classifier;
* :class:`CharLSTM` - an embedding, one LSTM layer and a linear read-out per position;
* :class:`ResNet` - a small residual network for 32x32 images (ResNet-14 by default: three
  stages of two basic blocks, widths 16/32/64, batch norm).

The linear model and the 2-layer network are the "SO-friendly" structures of Shea & Schmidt
2024: their parameters are in ``nn.Linear`` order (weight, bias per layer), which is the
order :class:`~nos.optim.plane_search.PlaneSearch` expects.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
from torch import nn

from nos.training.models import init_weights

__all__ = [
    "ACTIVATIONS",
    "MLP",
    "CharLSTM",
    "LinearModel",
    "ResNet",
    "SmallCNN",
    "TwoLayerMLP",
]

#: Activations by name, for :class:`TwoLayerMLP` (the names plane search knows).
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "relu": nn.ReLU,
    "silu": nn.SiLU,
}


@contextlib.contextmanager
def _private_rng(generator: torch.Generator | None) -> Iterator[None]:
    """Keep torch's default init of new layers from consuming the global CPU generator."""
    if generator is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        yield


class LinearModel(nn.Linear):
    """``nn.Linear(in_features, num_classes)`` on inputs flattened to vectors."""

    def __init__(
        self, in_features: int, num_classes: int, *, generator: torch.Generator | None = None
    ):
        with _private_rng(generator):
            super().__init__(in_features, num_classes)
        init_weights(self, generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.flatten(1))


class TwoLayerMLP(nn.Sequential):
    """``Linear(in_features, hidden) -> activation -> Linear(hidden, num_classes)``."""

    def __init__(
        self,
        in_features: int,
        hidden: int,
        num_classes: int,
        activation: str = "tanh",
        *,
        generator: torch.Generator | None = None,
    ):
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; known: {sorted(ACTIVATIONS)}")
        with _private_rng(generator):
            super().__init__(
                nn.Linear(in_features, hidden),
                ACTIVATIONS[activation](),
                nn.Linear(hidden, num_classes),
            )
        self.activation = activation
        init_weights(self, generator)


class MLP(nn.Module):
    """``depth`` hidden layers of ``hidden`` swish units, then a linear output layer."""

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        hidden: int = 64,
        depth: int = 2,
        *,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        with _private_rng(generator):
            layers: list[nn.Module] = []
            size = in_features
            for _ in range(depth):
                layers += [nn.Linear(size, hidden), nn.SiLU()]
                size = hidden
            layers.append(nn.Linear(size, num_classes))
            self.net = nn.Sequential(*layers)
        init_weights(self, generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1))


class SmallCNN(nn.Module):
    """Two 3x3 conv (``width``, ``2 width`` channels) -> ReLU -> 2x2 max-pool blocks, then a
    linear classifier on the flattened features; NCHW input of side ``size``."""

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 1,
        size: int = 16,
        width: int = 8,
        *,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        with _private_rng(generator):
            self.features = nn.Sequential(
                nn.Conv2d(in_channels, width, 3, padding=1),
                nn.ReLU(),
                nn.MaxPool2d(2),
                nn.Conv2d(width, 2 * width, 3, padding=1),
                nn.ReLU(),
                nn.MaxPool2d(2),
            )
            self.classifier = nn.Linear(2 * width * (size // 4) ** 2, num_classes)
        init_weights(self, generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


class CharLSTM(nn.Module):
    """Next-character model: embedding (``embed``), one LSTM layer (``hidden``), linear
    read-out at every position; (batch, length) tokens in, (batch, length, vocab) logits out.

    The tokens may arrive as floats (the task pipeline stores inputs as float32); they are
    exact small integers and are cast back. Embeddings start N(0, 1), the LSTM's weights and
    biases uniform in +-1/sqrt(hidden) (torch's default rule), the read-out Glorot-uniform;
    all from ``generator``.
    """

    def __init__(
        self,
        vocab: int,
        embed: int = 16,
        hidden: int = 64,
        *,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        with _private_rng(generator):
            self.embed = nn.Embedding(vocab, embed)
            self.lstm = nn.LSTM(embed, hidden, batch_first=True)
            self.head = nn.Linear(hidden, vocab)
        with torch.no_grad():
            nn.init.normal_(self.embed.weight, generator=generator)
            bound = 1.0 / math.sqrt(hidden)
            for p in self.lstm.parameters():
                nn.init.uniform_(p, -bound, bound, generator=generator)
        init_weights(self.head, generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(self.embed(x.long()))
        return self.head(out)


class _Block(nn.Module):
    """Basic residual block: conv-BN-ReLU-conv-BN plus the shortcut (a strided 1x1 conv
    with BN when the shape changes), then ReLU."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """A CIFAR-style ResNet: a 3x3 stem of ``width`` channels, three stages of ``blocks``
    basic blocks with ``width``, ``2 width`` and ``4 width`` channels (the last two starting
    at stride 2), global average pooling and a linear classifier. ``blocks=2`` is ResNet-14."""

    def __init__(
        self,
        num_classes: int = 10,
        width: int = 16,
        blocks: int = 2,
        *,
        in_channels: int = 3,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        with _private_rng(generator):
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(),
            )
            stages: list[nn.Module] = []
            cin = width
            for i, cout in enumerate((width, 2 * width, 4 * width)):
                for j in range(blocks):
                    stages.append(_Block(cin, cout, 2 if (i > 0 and j == 0) else 1))
                    cin = cout
            self.stages = nn.Sequential(*stages)
            self.classifier = nn.Linear(cin, num_classes)
        init_weights(self, generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x)).mean(dim=(-2, -1))
        return self.classifier(x)
