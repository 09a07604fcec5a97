"""Networks of the search suite's generated tasks and of the validation tasks.

Each is small enough to train for a few hundred steps in a few seconds on one CPU thread.
Weights are drawn only from the ``torch.Generator`` passed in (Glorot-uniform kernels and
zero biases as in :mod:`nos.training.models`; recurrent weights uniform in ±1/sqrt(hidden)
as torch's default, embeddings standard normal), so one seed gives one network and
building a model leaves torch's global random state untouched.

Search suite: :class:`SignalCNN` (MNIST-1D signals; no normalisation layer, whose running
statistics would lag at short budgets), :class:`RecallLSTM` (token sequences, a
prediction per position),
:class:`StudentMLP` (teacher-student regression), :class:`DeepTanhMLP` (a deep, narrow tanh
network: long chains of small Jacobians make a hard loss surface).

Validation tasks: :class:`GratingsCNN`, :class:`ForecastGRU`, :class:`ReluMLP`,
:class:`LinearModel`.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import nn

from nos.training.models import _private_rng, init_weights

__all__ = [
    "DeepTanhMLP",
    "ForecastGRU",
    "GratingsCNN",
    "LinearModel",
    "RecallLSTM",
    "ReluMLP",
    "SignalCNN",
    "StudentMLP",
]


@torch.no_grad()
def _init(model: nn.Module, generator: torch.Generator | None) -> nn.Module:
    init_weights(model, generator)
    for module in model.modules():
        if isinstance(module, nn.GRU | nn.LSTM):
            bound = 1.0 / math.sqrt(module.hidden_size)
            for param in module.parameters():
                param.uniform_(-bound, bound, generator=generator)
        elif isinstance(module, nn.Embedding):
            module.weight.normal_(0.0, 1.0, generator=generator)
    return model


def _mlp(sizes: list[int], activation: type[nn.Module]) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Flatten()]
    for a, b in itertools.pairwise(sizes[:-1]):
        layers += [nn.Linear(a, b), activation()]
    layers.append(nn.Linear(sizes[-2], sizes[-1]))
    return nn.Sequential(*layers)


class RecallLSTM(nn.Module):
    """Embedding -> LSTM -> linear read-out at every position: (N, L) tokens to (N, L, V)."""

    def __init__(
        self,
        vocab: int = 6,
        embed: int = 16,
        hidden: int = 32,
        *,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        with _private_rng(generator is not None):
            self.embed = nn.Embedding(vocab, embed)
            self.lstm = nn.LSTM(embed, hidden, batch_first=True)
            self.head = nn.Linear(hidden, vocab)
        _init(self, generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the task loader hands every input over as float32; token ids are exact in it
        out, _ = self.lstm(self.embed(x.long()))
        return self.head(out)


class SignalCNN(nn.Module):
    """A 1-D ConvNet without normalisation for (N, length) signals: conv 5 -> ReLU, then two
    stride-2 conv 3 -> ReLU, flattened into a linear classifier."""

    def __init__(
        self,
        width: int = 16,
        length: int = 40,
        classes: int = 10,
        *,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        out = math.ceil(math.ceil(length / 2) / 2)
        with _private_rng(generator is not None):
            self.features = nn.Sequential(
                nn.Conv1d(1, width, 5, padding=2),
                nn.ReLU(),
                nn.Conv1d(width, 2 * width, 3, stride=2, padding=1),
                nn.ReLU(),
                nn.Conv1d(2 * width, 2 * width, 3, stride=2, padding=1),
                nn.ReLU(),
            )
            self.head = nn.Linear(2 * width * out, classes)
        _init(self, generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 2:
            x = x.unsqueeze(1)
        return self.head(self.features(x).flatten(1))


class StudentMLP(nn.Module):
    """A swish MLP for the teacher-student regression."""

    def __init__(
        self,
        inputs: int = 16,
        hidden: int = 64,
        depth: int = 2,
        outputs: int = 4,
        *,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        with _private_rng(generator is not None):
            self.net = _mlp([inputs] + [hidden] * depth + [outputs], nn.SiLU)
        _init(self, generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class DeepTanhMLP(nn.Module):
    """``depth`` tanh layers of ``width`` units: a narrow, deep classifier of 2-D points."""

    def __init__(
        self,
        inputs: int = 2,
        width: int = 16,
        depth: int = 8,
        classes: int = 3,
        *,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        with _private_rng(generator is not None):
            self.net = _mlp([inputs] + [width] * depth + [classes], nn.Tanh)
        _init(self, generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class GratingsCNN(nn.Module):
    """Two 3x3 conv -> ReLU blocks (the second after 2x2 max pooling), global average
    pooling and a linear classifier, for (N, H, W, 1) images."""

    def __init__(
        self, width: int = 16, classes: int = 8, *, generator: torch.Generator | None = None
    ):
        super().__init__()
        with _private_rng(generator is not None):
            self.features = nn.Sequential(
                nn.Conv2d(1, width, 3, padding=1),
                nn.ReLU(),
                nn.MaxPool2d(2),
                nn.Conv2d(width, 2 * width, 3, padding=1),
                nn.ReLU(),
            )
            self.head = nn.Linear(2 * width, classes)
        _init(self, generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 4 and x.shape[-1] == 1:  # NHWC with one channel
            x = x.permute(0, 3, 1, 2)
        return self.head(self.features(x).mean(dim=(-2, -1)))


class ForecastGRU(nn.Module):
    """A GRU over (N, T, 1) windows; the last hidden state predicts ``horizon`` values."""

    def __init__(
        self, hidden: int = 32, horizon: int = 4, *, generator: torch.Generator | None = None
    ):
        super().__init__()
        with _private_rng(generator is not None):
            self.gru = nn.GRU(1, hidden, batch_first=True)
            self.head = nn.Linear(hidden, horizon)
        _init(self, generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, last = self.gru(x)
        return self.head(last[-1])


class ReluMLP(nn.Module):
    """A ReLU MLP classifier."""

    def __init__(
        self,
        inputs: int = 2,
        hidden: int = 64,
        depth: int = 2,
        classes: int = 2,
        *,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        with _private_rng(generator is not None):
            self.net = _mlp([inputs] + [hidden] * depth + [classes], nn.ReLU)
        _init(self, generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class LinearModel(nn.Module):
    """One linear layer (a convex problem: the noisy quadratic)."""

    def __init__(
        self, inputs: int = 32, outputs: int = 1, *, generator: torch.Generator | None = None
    ):
        super().__init__()
        with _private_rng(generator is not None):
            self.linear = nn.Linear(inputs, outputs)
        _init(self, generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)
