"""Proxy tasks: resident tensors, batch order, pipelines and data errors (spec §5.1)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from nos.training.data import DataError  # noqa: E402
from nos.training.tasks import TASKS, BatchOrder, load_task, worker_init  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _write_tiny_cifar_bin(root: Path, per_file: int = 4) -> Path:
    """Five training batches in the official binary layout (label byte + 3,072 pixels)."""
    folder = root / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(1, 6):
        labels = rng.integers(0, 10, per_file, dtype=np.uint8)
        pixels = rng.integers(0, 256, (per_file, 3072), dtype=np.uint8)
        records = np.concatenate([labels[:, None], pixels], axis=1)
        (folder / f"data_batch_{i}.bin").write_bytes(records.tobytes())
    return folder


def test_batch_order_without_shuffle_is_cyclic():
    order = BatchOrder(5, 3)
    got = [order.next().tolist() for _ in range(4)]
    assert got == [[0, 1, 2], [3, 4, 0], [1, 2, 3], [4, 0, 1]]


def test_batch_order_shuffle_comes_from_the_generator():
    def draw(seed: int) -> list[list[int]]:
        order = BatchOrder(7, 3, shuffle=True, generator=torch.Generator().manual_seed(seed))
        return [order.next().tolist() for _ in range(7)]

    first = draw(1)
    assert first == draw(1) and first != draw(2)
    flat = [i for batch in first for i in batch]
    for p in range(3):  # every pass is a permutation of all samples
        assert sorted(flat[7 * p : 7 * p + 7]) == list(range(7))
    with pytest.raises(ValueError, match="Generator"):
        BatchOrder(7, 3, shuffle=True)


def test_digits_task_is_resident_and_builds_its_model():
    task = load_task("digits")
    assert task is load_task("digits")  # cached per process
    assert task.train_x.shape[1:] == (1, 8, 8) and task.train_x.dtype == torch.float32
    assert task.train_y.dtype == torch.int64 and len(task.val_y) == 300
    a, b = task.build_model(3), task.build_model(3)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
    assert 0.0 <= task.accuracy(a) <= 1.0
    assert task.augmenter(0) is None


def test_cifar10_tasks_from_files(tmp_path: Path):
    _write_tiny_cifar_bin(tmp_path)
    plain = load_task("cifar10", data_dir=tmp_path, width=4, validation_size=4)
    assert plain.train_x.shape == (16, 3, 32, 32) and len(plain.val_y) == 4
    assert float(plain.train_x.min()) >= 0.0 and float(plain.train_x.max()) <= 1.0
    assert plain.model_options == {"width": 4}

    aug = load_task("cifar10", data_dir=tmp_path, width=4, augment=True, validation_size=4)
    everything = torch.cat([aug.train_x, aug.val_x])  # normalised over train + validation
    assert torch.allclose(everything.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4)
    batch = aug.train_x[:8]
    first, again = aug.augmenter(5)(batch), aug.augmenter(5)(batch)
    assert torch.equal(first, again) and not torch.equal(first, batch)
    model = aug.build_model(0)
    assert model(batch).shape == (8, 10)


def test_task_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("NOS_DATA", raising=False)
    with pytest.raises(DataError, match="NOS_DATA"):
        load_task("cifar10")
    with pytest.raises(DataError, match=r"data_batch_1\.bin"):
        load_task("cifar10", data_dir=tmp_path)
    with pytest.raises(ValueError, match="unknown task"):
        load_task("imagenet")
    with pytest.raises(ValueError, match="augmentation"):
        load_task("digits", augment=True)
    assert set(TASKS) >= {"cifar10", "flowers102", "digits", "mnist1d"}


def test_worker_init_sets_threads():
    worker_init(1)
    assert torch.get_num_threads() == 1
