"""Networks of the proxy tasks, with deterministic initialisation.

* :class:`ConvNet` - the paper's CIFAR-10 proxy network (paper-spec §5.2) of width ``b``:
  three 3x3 conv -> BN -> swish blocks with b, 2b and 4b channels (the last two of stride
  2), global average pooling, dropout 0.2 and a linear classifier. ``b=32`` (initial
  population) has 95,434 parameters as Keras counts them, 94,986 of them trainable; ``b=48``
  (particle phase) has 212,266 and 211,594. Keras includes BatchNorm's moving mean and
  variance in the total; :func:`count_parameters` reproduces both numbers.
* :class:`DigitsMLP` - a small multilayer perceptron for the 8x8 digits.
* :class:`Mnist1dCNN` - a small 1-D convolutional network for MNIST-1D signals.

The networks return logits (the softmax belongs to the loss). Weights follow the Keras
defaults the paper used (Glorot-uniform kernels, zero biases, BN with momentum 0.99 and
epsilon 1e-3) and are drawn only from the ``torch.Generator`` passed in, so the same seed
gives identical weights and building a model leaves torch's global random state untouched.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable, Iterator, Mapping
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from nos.training.registry import get_task, task_names

__all__ = [
    "MODELS",
    "ConvNet",
    "DigitsMLP",
    "Mnist1dCNN",
    "ParameterCount",
    "SameConv2d",
    "build_model",
    "count_parameters",
    "init_weights",
]

# Keras BatchNormalization defaults; torch's momentum weights the new batch, Keras' the old.
_BN_MOMENTUM = 1.0 - 0.99
_BN_EPS = 1e-3


class ParameterCount(NamedTuple):
    """Sizes as Keras reports them: ``total`` includes non-trainable float state."""

    total: int
    trainable: int


def count_parameters(model: nn.Module) -> ParameterCount:
    """Trainable parameters, and the Keras-style total that adds floating-point buffers.

    The buffers counted are BatchNorm's running mean and variance; the integer batch
    counter torch keeps has no Keras counterpart and is left out.
    """
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    state = sum(b.numel() for b in model.buffers() if b.is_floating_point())
    return ParameterCount(trainable + frozen + state, trainable)


@torch.no_grad()
def init_weights(model: nn.Module, generator: torch.Generator | None = None) -> nn.Module:
    """(Re)initialise every layer of ``model`` the way Keras does by default.

    Convolution and linear kernels are Glorot-uniform, biases zero; BatchNorm gets scale 1,
    shift 0 and fresh running statistics. Random numbers come from ``generator`` only
    (torch's global generator when it is ``None``).
    """
    for module in model.modules():
        if isinstance(module, nn.Conv1d | nn.Conv2d | nn.Linear):
            nn.init.xavier_uniform_(module.weight, generator=generator)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.reset_parameters()
    return model


@contextlib.contextmanager
def _private_rng(enabled: bool) -> Iterator[None]:
    """Keep torch's default init of new layers from consuming the global CPU generator."""
    if not enabled:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        yield


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    # TensorFlow's "same": output ceil(size / stride); an odd total pad goes after the input.
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class SameConv2d(nn.Conv2d):
    """2-D convolution with TensorFlow/Keras ``padding="same"``.

    For stride 2 on an even input Keras pads only the bottom and right, which torch's
    symmetric ``padding`` cannot express; the pad is applied explicitly in that case.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        top, bottom = _same_padding(x.shape[-2], kh, sh)
        left, right = _same_padding(x.shape[-1], kw, sw)
        if top == bottom and left == right:
            return F.conv2d(x, self.weight, self.bias, self.stride, (top, left))
        x = F.pad(x, (left, right, top, bottom))
        return F.conv2d(x, self.weight, self.bias, self.stride)


def _conv_block(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        SameConv2d(cin, cout, 3, stride),
        nn.BatchNorm2d(cout, eps=_BN_EPS, momentum=_BN_MOMENTUM),
        nn.SiLU(),
    )


class ConvNet(nn.Module):
    """The paper's proxy ConvNet of width ``width`` (b) for NCHW float images."""

    def __init__(
        self,
        width: int = 32,
        num_classes: int = 10,
        *,
        in_channels: int = 3,
        dropout: float = 0.2,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        self.width = width
        with _private_rng(generator is not None):
            self.features = nn.Sequential(
                _conv_block(in_channels, width, 1),
                _conv_block(width, 2 * width, 2),
                _conv_block(2 * width, 4 * width, 2),
            )
            self.dropout = nn.Dropout(dropout)
            self.classifier = nn.Linear(4 * width, num_classes)
        init_weights(self, generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x).mean(dim=(-2, -1))  # global average pooling
        return self.classifier(self.dropout(x))


class DigitsMLP(nn.Module):
    """Multilayer perceptron with swish activations; flattens any input to one vector."""

    def __init__(
        self,
        in_features: int = 64,
        hidden: int = 64,
        depth: int = 2,
        num_classes: int = 10,
        *,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        with _private_rng(generator is not None):
            layers: list[nn.Module] = [nn.Flatten()]
            size = in_features
            for _ in range(depth):
                layers += [nn.Linear(size, hidden), nn.SiLU()]
                size = hidden
            layers.append(nn.Linear(size, num_classes))
            self.net = nn.Sequential(*layers)
        init_weights(self, generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Mnist1dCNN(nn.Module):
    """1-D ConvNet for MNIST-1D: (N, length) or (N, 1, length) signals to logits.

    Three conv -> BN -> swish blocks (kernel 5 at stride 1, then kernel 3 at stride 2
    twice) keep positional information through a flattening linear classifier.
    """

    def __init__(
        self,
        width: int = 32,
        length: int = 40,
        num_classes: int = 10,
        *,
        generator: torch.Generator | None = None,
    ):
        super().__init__()

        def block(cin: int, kernel: int, stride: int) -> list[nn.Module]:
            return [
                nn.Conv1d(cin, width, kernel, stride=stride, padding=kernel // 2),
                nn.BatchNorm1d(width, eps=_BN_EPS, momentum=_BN_MOMENTUM),
                nn.SiLU(),
            ]

        out_length = math.ceil(math.ceil(length / 2) / 2)
        with _private_rng(generator is not None):
            self.features = nn.Sequential(*block(1, 5, 1), *block(width, 3, 2), *block(width, 3, 2))
            self.classifier = nn.Linear(width * out_length, num_classes)
        init_weights(self, generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 2:
            x = x.unsqueeze(1)
        return self.classifier(self.features(x).flatten(1))


class _TaskModels(Mapping[str, Callable[..., nn.Module]]):
    """The model constructor of every registered task (a view of the task registry)."""

    def __getitem__(self, task: str) -> Callable[..., nn.Module]:
        if task not in task_names():
            raise KeyError(task)
        info = get_task(task)
        return functools.partial(info.model_class(), **info.model_options)

    def __iter__(self) -> Iterator[str]:
        return iter(task_names())

    def __len__(self) -> int:
        return len(task_names())


#: Model for each registered task, by task name.
MODELS: Mapping[str, Callable[..., nn.Module]] = _TaskModels()


def build_model(
    task: str, *, seed: int | None = None, device: torch.device | str | None = None, **options
) -> nn.Module:
    """The model of the registered ``task``, initialised from ``seed`` (global RNG when
    ``None``)."""
    try:
        factory = MODELS[task]
    except KeyError:
        raise ValueError(f"no model for data set {task!r}; known: {sorted(MODELS)}") from None
    generator = None if seed is None else torch.Generator().manual_seed(seed)
    model = factory(generator=generator, **options)
    return model.to(device) if device is not None else model
