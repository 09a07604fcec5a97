"""Data loaders on tiny files in the official formats, the built-in sets and the pipelines."""

from __future__ import annotations

import logging
import os
import pickle
import random
import struct
from pathlib import Path

import numpy as np
import pytest

from nos.errors import NosError
from nos.training.data import (
    DATA_ENV,
    DataError,
    Dataset,
    Split,
    as_float32,
    augment_batch,
    channel_stats,
    embedded,
    load_cifar10,
    load_dataset,
    load_digits,
    load_flowers102,
    load_mnist1d,
    normalize,
    to_tensor,
)

torch = pytest.importorskip("torch")

PER_BATCH = 3  # CIFAR-10 records per fake batch file
BATCHES = ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5"]


# ---------------------------------------------------------------- CIFAR-10 file writers


def _py2_pickle(obj: object) -> bytes:
    """Pickle ``obj`` the way Python 2's cPickle wrote the official CIFAR-10 batches.

    Byte strings are Python 2 ``str`` opcodes and arrays go through
    ``numpy.core.multiarray._reconstruct``, so the loader sees what the real files contain.
    """
    out = bytearray(b"\x80\x02")

    def emit(o: object) -> None:
        if isinstance(o, dict):
            out.extend(b"}(")
            for key, value in o.items():
                emit(key)
                emit(value)
            out.extend(b"u")
        elif isinstance(o, list | tuple):
            out.extend(b"](" if isinstance(o, list) else b"(")
            for value in o:
                emit(value)
            out.extend(b"e" if isinstance(o, list) else b"t")
        elif o is None:
            out.extend(b"N")
        elif isinstance(o, bool):
            out.extend(b"\x88" if o else b"\x89")
        elif isinstance(o, int):
            out.extend(b"K" + bytes([o]) if 0 <= o < 256 else b"J" + struct.pack("<i", o))
        elif isinstance(o, bytes):
            if len(o) < 256:
                out.extend(b"U" + bytes([len(o)]) + o)
            else:
                out.extend(b"T" + struct.pack("<i", len(o)) + o)
        elif isinstance(o, np.ndarray):
            out.extend(b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n")
            emit((0,))
            emit(b"b")
            out.extend(b"\x87R(K\x01")  # reduce, then the state tuple: version, shape, ...
            emit(o.shape)
            out.extend(b"cnumpy\ndtype\n")
            emit(b"u1")
            out.extend(b"K\x00K\x01\x87R")
            emit((3, b"|", None, None, None, -1, -1, 0))
            out.extend(b"b\x89")
            emit(o.tobytes())
            out.extend(b"tb")
        else:
            raise TypeError(type(o))

    emit(obj)
    out.extend(b".")
    return bytes(out)


def _fake_cifar(seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return {
        name: (
            rng.integers(0, 256, (PER_BATCH, 32, 32, 3), dtype=np.uint8),
            rng.integers(0, 10, PER_BATCH).astype(np.int64),
        )
        for name in [*BATCHES, "test_batch"]
    }


def _planes(images: np.ndarray) -> np.ndarray:
    return images.transpose(0, 3, 1, 2).reshape(len(images), -1)  # R, G, B planes per row


def write_cifar_bin(root: Path, data: dict) -> Path:
    folder = root / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    for name, (x, y) in data.items():
        records = np.concatenate([y.astype(np.uint8)[:, None], _planes(x)], axis=1)
        (folder / f"{name}.bin").write_bytes(records.tobytes())
    return folder


def write_cifar_py(root: Path, data: dict, *, modern: bool = False) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name, (x, y) in data.items():
        batch = {
            b"batch_label": name.encode(),
            b"labels": [int(v) for v in y],
            b"data": _planes(x).copy(),
            b"filenames": [f"img{i}.png".encode() for i in range(len(y))],
        }
        blob = pickle.dumps(batch, protocol=4) if modern else _py2_pickle(batch)
        (folder / name).write_bytes(blob)
    return folder


def _stack(data: dict, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    return np.concatenate([data[n][0] for n in names]), np.concatenate([data[n][1] for n in names])


def _check_cifar(ds: Dataset, data: dict, validation_size: int) -> None:
    x, y = _stack(data, BATCHES)
    cut = len(y) - validation_size
    assert ds.name == "cifar10" and ds.num_classes == 10 and ds.input_shape == (32, 32, 3)
    assert ds.train.x.dtype == np.uint8 and ds.train.y.dtype == np.int64
    np.testing.assert_array_equal(ds.train.x, x[:cut])
    np.testing.assert_array_equal(ds.train.y, y[:cut])
    np.testing.assert_array_equal(ds.validation.x, x[cut:])
    np.testing.assert_array_equal(ds.validation.y, y[cut:])


# ---------------------------------------------------------------- CIFAR-10


@pytest.mark.parametrize("fmt", ["bin", "py", "py-modern"])
def test_cifar10_formats(tmp_path: Path, fmt: str) -> None:
    data = _fake_cifar()
    if fmt == "bin":
        write_cifar_bin(tmp_path, data)
    else:
        write_cifar_py(tmp_path, data, modern=fmt == "py-modern")
    ds = load_cifar10(tmp_path, validation_size=4)
    _check_cifar(ds, data, 4)
    assert ds.test is None  # never loaded unless asked for
    with_test = load_cifar10(tmp_path, validation_size=4, include_test=True)
    assert with_test.test is not None
    np.testing.assert_array_equal(with_test.test.x, data["test_batch"][0])
    np.testing.assert_array_equal(with_test.test.y, data["test_batch"][1])


def test_cifar10_batch_dir_env_and_format_choice(tmp_path, monkeypatch) -> None:
    data = _fake_cifar(1)
    folder = write_cifar_py(tmp_path, data)
    _check_cifar(load_cifar10(folder, validation_size=2), data, 2)  # the batch dir itself
    monkeypatch.setenv(DATA_ENV, str(tmp_path))
    _check_cifar(load_cifar10(validation_size=2), data, 2)
    _check_cifar(load_dataset("cifar10", validation_size=2), data, 2)
    with pytest.raises(DataError, match="binary version"):
        load_cifar10(fmt="bin", validation_size=2)


def test_cifar10_default_split_needs_more_images(tmp_path) -> None:
    write_cifar_bin(tmp_path, _fake_cifar())
    with pytest.raises(DataError, match="cannot leave 5000 for validation"):
        load_cifar10(tmp_path)


def test_cifar10_missing(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv(DATA_ENV, raising=False)
    with pytest.raises(DataError, match=DATA_ENV):
        load_cifar10()
    with pytest.raises(DataError, match="does not exist"):
        load_cifar10(tmp_path / "nowhere")
    with pytest.raises(DataError) as info:
        load_cifar10(tmp_path)
    message = str(info.value)
    assert isinstance(info.value, NosError) and "\n" not in message
    assert "cifar-10-batches-bin/data_batch_1.bin" in message
    assert "CIFAR-10 binary version" in message and "cs.toronto.edu" in message


def test_cifar10_missing_batch_and_test_file(tmp_path) -> None:
    folder = write_cifar_bin(tmp_path, _fake_cifar())
    (folder / "test_batch.bin").unlink()
    load_cifar10(tmp_path, validation_size=2)  # the test file is not needed for the search
    with pytest.raises(DataError, match=r"test_batch\.bin"):
        load_cifar10(tmp_path, validation_size=2, include_test=True)
    (folder / "data_batch_4.bin").unlink()
    with pytest.raises(DataError, match=r"missing CIFAR-10 file .*data_batch_4\.bin"):
        load_cifar10(tmp_path, validation_size=2)


def test_cifar10_truncated_bin(tmp_path) -> None:
    folder = write_cifar_bin(tmp_path, _fake_cifar())
    path = folder / "data_batch_2.bin"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match=r"data_batch_2.bin: .*truncated"):
        load_cifar10(tmp_path, validation_size=2)


def test_cifar10_bad_labels(tmp_path) -> None:
    data = _fake_cifar()
    data["data_batch_1"][1][0] = 11
    write_cifar_bin(tmp_path, data)
    with pytest.raises(DataError, match="labels outside 0-9"):
        load_cifar10(tmp_path, validation_size=2)


def test_cifar10_truncated_pickle(tmp_path) -> None:
    folder = write_cifar_py(tmp_path, _fake_cifar())
    path = folder / "data_batch_3"
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(DataError, match="data_batch_3"):
        load_cifar10(tmp_path, validation_size=2)


def test_cifar10_pickle_cannot_run_code(tmp_path) -> None:
    folder = write_cifar_py(tmp_path, _fake_cifar())
    marker = tmp_path / "executed"
    # The classic exploit: call os.system while unpickling.
    exploit = b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR."
    (folder / "data_batch_1").write_bytes(exploit)
    with pytest.raises(DataError, match=r"refusing to load os\.system"):
        load_cifar10(tmp_path, validation_size=2)
    assert not marker.exists()

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    (folder / "data_batch_1").write_bytes(pickle.dumps({b"data": Payload()}, protocol=4))
    with pytest.raises(DataError, match="refusing to load"):
        load_cifar10(tmp_path, validation_size=2)
    assert not marker.exists()


def test_cifar10_pickle_with_wrong_content(tmp_path) -> None:
    folder = write_cifar_py(tmp_path, _fake_cifar())
    (folder / "data_batch_1").write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(DataError, match="no dict"):
        load_cifar10(tmp_path, validation_size=2)
    (folder / "data_batch_1").write_bytes(pickle.dumps({b"labels": [1]}))
    with pytest.raises(DataError, match="lacks 'data'"):
        load_cifar10(tmp_path, validation_size=2)


# ---------------------------------------------------------------- Flowers102


FLOWER_SIZES = [(40, 50), (64, 48), (33, 33), (50, 80), (45, 45), (60, 30), (48, 64)]
FLOWER_LABELS = [1, 2, 102, 5, 1, 3, 7]
FLOWER_COLOURS = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (120, 120, 120)]


def write_flowers(root: Path) -> Path:
    from PIL import Image
    from scipy.io import savemat

    (root / "jpg").mkdir(parents=True)
    for i, (w, h) in enumerate(FLOWER_SIZES, start=1):
        colour = FLOWER_COLOURS[i % len(FLOWER_COLOURS)]
        image = Image.new("RGB", (w, h), colour)
        if i == 4:
            image = image.convert("L")  # the real set has a few odd modes too
        image.save(root / "jpg" / f"image_{i:05d}.jpg", quality=95)
    savemat(root / "imagelabels.mat", {"labels": np.array([FLOWER_LABELS], dtype=np.uint8)})
    savemat(
        root / "setid.mat",
        {
            "trnid": np.array([[3, 1, 6]], dtype=np.uint16),
            "valid": np.array([[2, 7]], dtype=np.uint16),
            "tstid": np.array([[5, 4]], dtype=np.uint16),
        },
    )
    return root


def test_flowers102_loads_splits(tmp_path) -> None:
    root = write_flowers(tmp_path / "flowers-102")
    ds = load_flowers102(tmp_path, size=8)  # finds the flowers-102/ subdirectory
    assert ds.name == "flowers102" and ds.num_classes == 102 and ds.input_shape == (8, 8, 3)
    assert ds.train.x.dtype == np.uint8 and ds.train.y.dtype == np.int64
    np.testing.assert_array_equal(ds.train.y, [102 - 1, 1 - 1, 3 - 1])
    np.testing.assert_array_equal(ds.validation.y, [2 - 1, 7 - 1])
    assert ds.test is None
    # Image 3 is a solid colour: resizing must keep it (up to JPEG error).
    expected = np.array(FLOWER_COLOURS[3 % len(FLOWER_COLOURS)])
    assert np.abs(ds.train.x[0].astype(int) - expected).max() <= 6
    test = load_flowers102(root, size=8, include_test=True).test
    assert test is not None and test.x.shape == (2, 8, 8, 3)
    np.testing.assert_array_equal(test.y, [1 - 1, 5 - 1])
    grey = test.x[1].astype(int)  # image 4, stored as greyscale
    assert np.abs(grey - grey[..., :1]).max() <= 1


def test_flowers102_cache(tmp_path, caplog) -> None:
    root = write_flowers(tmp_path)
    first = load_flowers102(root, size=6)
    caches = sorted(p.name for p in root.glob("*.npy"))
    assert len(caches) == 1 and "6x6" in caches[0]
    moved = root / "jpg" / "image_00002.jpg"
    moved.rename(root / "away.jpg")
    again = load_flowers102(root, size=6)  # served from the cache: no JPEG needed
    np.testing.assert_array_equal(again.train.x, first.train.x)
    with pytest.raises(DataError, match=r"image_00002\.jpg"):
        load_flowers102(root, size=7)  # another size needs the images again
    (root / "away.jpg").rename(moved)
    assert load_flowers102(root, size=7).input_shape == (7, 7, 3)
    assert len(list(root.glob("*.npy"))) == 2
    (root / caches[0]).write_bytes(b"not an npy file")
    with caplog.at_level(logging.WARNING, logger="nos.training.data.flowers102"):
        rebuilt = load_flowers102(root, size=6)
    assert "rebuilding" in caplog.text
    np.testing.assert_array_equal(rebuilt.train.x, first.train.x)
    assert not list(root.glob("*.tmp"))  # the atomic writes left nothing behind


def test_flowers102_errors(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv(DATA_ENV, raising=False)
    with pytest.raises(DataError, match=r"imagelabels\.mat"):
        load_flowers102(tmp_path)
    root = write_flowers(tmp_path)
    (root / "jpg" / "image_00005.jpg").write_bytes(b"\xff\xd8 broken jpeg")
    with pytest.raises(DataError, match=r"image_00005\.jpg: unreadable image"):
        load_flowers102(root, size=8, cache=False)
    (root / "setid.mat").unlink()
    with pytest.raises(DataError, match=r"missing Flowers102 file .*setid.mat"):
        load_flowers102(root)
    (root / "imagelabels.mat").write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"imagelabels\.mat: unreadable"):
        load_flowers102(root)


def test_flowers102_bad_ids(tmp_path) -> None:
    from scipy.io import savemat

    root = write_flowers(tmp_path)
    savemat(root / "setid.mat", {"trnid": [[1, 99]], "valid": [[2]], "tstid": [[3]]})
    with pytest.raises(DataError, match=r"'trnid' has image ids outside 1\.\.7"):
        load_flowers102(root)


# ---------------------------------------------------------------- built-in sets


def test_digits_split() -> None:
    ds = load_digits()
    assert ds.test is None and ds.num_classes == 10 and ds.input_shape == (8, 8, 1)
    assert (len(ds.train), len(ds.validation)) == (1200, 300)
    assert ds.train.x.dtype == np.float32 and ds.train.x.min() >= 0 and ds.train.x.max() <= 1
    full = load_digits(include_test=True)
    assert full.test is not None and len(full.test) == 297
    np.testing.assert_array_equal(full.train.x, ds.train.x)  # same seed, same split
    other = load_digits(seed=1)
    assert not np.array_equal(other.train.y, ds.train.y)
    rows = {x.tobytes() for s in full.splits().values() for x in s.x}
    assert len(rows) > 1700  # disjoint splits (a few digits are exact duplicates)


def test_mnist1d_generated_and_cached(tmp_path, monkeypatch) -> None:
    np.random.seed(123)
    random.seed(123)
    before = np.random.get_state()[1].copy(), random.getstate()
    ds = load_mnist1d(cache_dir=tmp_path)
    assert np.array_equal(np.random.get_state()[1], before[0]) and random.getstate() == before[1]
    assert ds.name == "mnist1d" and ds.input_shape == (40,) and ds.test is None
    assert (len(ds.train), len(ds.validation)) == (3600, 400)
    assert ds.train.x.dtype == np.float32 and ds.train.y.dtype == np.int64
    assert set(np.unique(ds.train.y)) == set(range(10))
    cache = list(tmp_path.glob("mnist1d-*-seed42-n5000.npz"))
    assert len(cache) == 1

    def no_generation(*args):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(embedded, "_generate_mnist1d", no_generation)
    again = load_mnist1d(cache_dir=tmp_path, include_test=True)
    np.testing.assert_array_equal(again.train.x, ds.train.x)
    assert again.test is not None and len(again.test) == 1000


def test_mnist1d_matches_generator_and_survives_corrupt_cache(tmp_path, caplog) -> None:
    from mnist1d.data import get_dataset_args, make_dataset

    ds = load_mnist1d(cache_dir=tmp_path, num_samples=200, validation_size=20, include_test=True)
    args = get_dataset_args()
    args.num_samples = 200
    state = np.random.get_state()
    reference = make_dataset(args)
    np.random.set_state(state)
    np.testing.assert_allclose(ds.train.x, reference["x"][:140].astype(np.float32))
    np.testing.assert_array_equal(ds.validation.y, reference["y"][140:])
    assert ds.test is not None
    np.testing.assert_array_equal(ds.test.y, reference["y_test"])
    (path,) = tmp_path.glob("mnist1d-*-n200.npz")
    path.write_bytes(b"corrupt")
    with caplog.at_level(logging.WARNING, logger="nos.training.data.embedded"):
        again = load_mnist1d(cache_dir=tmp_path, num_samples=200, validation_size=20)
    assert "regenerating" in caplog.text
    np.testing.assert_array_equal(again.train.x, ds.train.x)


def test_load_dataset_dispatch() -> None:
    assert load_dataset("digits").name == "digits"
    with pytest.raises(DataError, match="unknown data set 'imagenet'"):
        load_dataset("imagenet")


def test_split_validates() -> None:
    with pytest.raises(ValueError, match="int64"):
        Split(np.zeros((2, 3)), np.zeros(2, dtype=np.int32))
    with pytest.raises(ValueError, match="2 inputs but 3 labels"):
        Split(np.zeros((2, 3)), np.zeros(3, dtype=np.int64))


# ---------------------------------------------------------------- pipelines


def test_channel_stats_and_normalize() -> None:
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (7, 5, 5, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (4, 5, 5, 3), dtype=np.uint8)
    mean, std = channel_stats(a, b, chunk=3)
    both = np.concatenate([a, b]).astype(np.float64) / 255
    np.testing.assert_allclose(mean, both.mean(axis=(0, 1, 2)), rtol=1e-6)
    np.testing.assert_allclose(std, both.std(axis=(0, 1, 2)), rtol=1e-5)
    z = normalize(np.concatenate([a, b]), mean, std)
    assert z.dtype == np.float32
    np.testing.assert_allclose(z.mean(axis=(0, 1, 2)), 0, atol=1e-5)
    np.testing.assert_allclose(z.std(axis=(0, 1, 2)), 1, atol=1e-5)
    assert as_float32(np.array([0, 255], dtype=np.uint8)).tolist() == [0.0, 1.0]


def test_to_tensor_layout() -> None:
    x = np.arange(2 * 4 * 5 * 3, dtype=np.uint8).reshape(2, 4, 5, 3)
    t = to_tensor(x)
    assert t.shape == (2, 3, 4, 5) and t.dtype == torch.float32
    assert t[1, 2, 3, 4].item() == pytest.approx(x[1, 3, 4, 2] / 255)
    signals = np.ones((3, 40), dtype=np.float32)
    s = to_tensor(signals)
    s += 1
    assert signals.max() == 1  # the tensor does not alias the caller's array


def _batch(n: int = 6) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(5))


def test_augment_is_seeded() -> None:
    x = _batch()
    a = augment_batch(x, torch.Generator().manual_seed(1))
    b = augment_batch(x, torch.Generator().manual_seed(1))
    c = augment_batch(x, torch.Generator().manual_seed(2))
    assert a.shape == x.shape and a.dtype == x.dtype
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(augment_batch(x, torch.Generator(), pad=0, flip=False, cutout=0), x)


def test_augment_crop_is_a_window_of_the_reflected_image() -> None:
    x = _batch(4)
    out = augment_batch(x, torch.Generator().manual_seed(3), flip=False, cutout=0)
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4), mode="reflect")
    for k in range(len(x)):
        windows = [
            (i, j)
            for i in range(9)
            for j in range(9)
            if torch.equal(padded[k, :, i : i + 32, j : j + 32], out[k])
        ]
        assert windows, f"image {k} is not a crop of its padded version"


def test_augment_flip_and_cutout() -> None:
    x = _batch(32) + 10  # no zeros before the cutout
    flipped = augment_batch(x, torch.Generator().manual_seed(4), pad=0, cutout=0)
    same = [torch.equal(flipped[k], x[k]) for k in range(len(x))]
    mirror = [torch.equal(flipped[k], x[k].flip(-1)) for k in range(len(x))]
    assert all(s or m for s, m in zip(same, mirror, strict=True))
    assert any(same) and any(mirror)
    cut = augment_batch(x, torch.Generator().manual_seed(4), pad=0, flip=False)
    holes = cut == 0
    assert torch.equal(holes[:, :1].expand_as(holes), holes)  # all channels alike
    for k in range(len(x)):
        rows = holes[k, 0].any(dim=1).nonzero().ravel()
        cols = holes[k, 0].any(dim=0).nonzero().ravel()
        assert 4 <= len(rows) <= 8 and 4 <= len(cols) <= 8  # 8x8, clipped at the border
        assert int(holes[k, 0].sum()) == len(rows) * len(cols)  # one solid rectangle
        assert torch.equal(cut[k][~holes[k]], x[k][~holes[k]])
