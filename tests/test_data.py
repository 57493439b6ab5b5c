"""Image data loading: IDX (plain and gzipped) and .npz files written here, and clear errors."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from problems import get_problem
from problems.data import load_data, read_idx, to_intensities


def idx_bytes(array: np.ndarray, code: int = 0x08) -> bytes:
    """An IDX file's bytes, written from the format's definition."""
    dtype = {0x08: ">u1", 0x0D: ">f4"}[code]
    header = bytes([0, 0, code, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.astype(dtype).tobytes()


@pytest.fixture
def images() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(20, 4, 5), dtype=np.uint8)  # [N, H, W]


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
def test_idx_round_trip(tmp_path: Path, images: np.ndarray, gz: bool) -> None:
    raw = idx_bytes(images)
    path = tmp_path / ("train.idx.gz" if gz else "train.idx")
    path.write_bytes(gzip.compress(raw) if gz else raw)
    np.testing.assert_array_equal(read_idx(path), images)
    data = load_data(str(path), test_fraction=0.25, seed=1)
    assert data.image_shape == (4, 5)
    assert data.train.shape == (15, 20) and data.test.shape == (5, 20)
    unit = images.reshape(20, -1) / 255.0
    for row in data.train.numpy():  # every training row is one of the images, scaled
        assert np.isclose(unit, row, atol=1e-6).all(1).any()
    assert set(np.unique(data.test.numpy())) <= {0.0, 1.0}  # the test set is binarized


def test_idx_float_payload(tmp_path: Path) -> None:
    values = np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 2, 2)
    path = tmp_path / "floats.idx"
    path.write_bytes(idx_bytes(values, code=0x0D))
    np.testing.assert_array_equal(read_idx(path), values)


@pytest.mark.parametrize("scale", [1.0, 255.0], ids=["unit", "bytes"])
def test_npz_values_are_scaled(tmp_path: Path, images: np.ndarray, scale: float) -> None:
    unit = images.astype(np.float64) / 255.0
    path = tmp_path / "images.npz"
    np.savez(path, images=(unit * scale).astype(np.float32))
    data = load_data(str(path), test_source=str(path), seed=0)
    flat = unit.reshape(20, -1)
    torch.testing.assert_close(data.train, torch.as_tensor(flat, dtype=torch.float32))
    np.testing.assert_array_equal(data.test.numpy(), (flat >= 0.5).astype(np.float32))


def test_npz_with_one_unnamed_array(tmp_path: Path, images: np.ndarray) -> None:
    path = tmp_path / "x.npz"
    np.savez(path, images)
    assert load_data(str(path), test_fraction=0.5).train.shape == (10, 20)


def test_vae_runs_on_a_file(tmp_path: Path, images: np.ndarray) -> None:
    path = tmp_path / "train.idx.gz"
    path.write_bytes(gzip.compress(idx_bytes(images)))
    problem = get_problem("bernoulli_vae")({"data": str(path), "batch": 4, "latents": 3})
    assert problem.x.shape == (4, 20)
    assert problem.truth(problem.init_params()).grad["encoder.0.weight"].shape == (20, 3)


def test_digits_default() -> None:
    data = load_data("digits", seed=0)
    assert data.image_shape == (8, 8)
    assert data.train.shape[0] + data.test.shape[0] == 1797
    again = load_data("digits", seed=0)
    torch.testing.assert_close(data.test, again.test)
    other = load_data("digits", seed=1)
    assert not torch.equal(data.train, other.train)


def test_dynamic_binarization_resamples() -> None:
    data = load_data("digits", binarize="dynamic", seed=0)
    generator = torch.Generator().manual_seed(0)
    x = data.train[:200]
    first, second = data.binary(x, generator), data.binary(x, generator)
    assert not torch.equal(first, second)
    assert set(first.unique().tolist()) <= {0.0, 1.0}
    draws = torch.stack([data.binary(x, generator) for _ in range(200)])
    assert (draws.mean(0) - x).abs().max() < 0.15  # Bernoulli(intensity), 200 draws: se <= 0.035
    threshold = load_data("digits", seed=0)
    torch.testing.assert_close(threshold.binary(x, generator), (x >= 0.5).to(x.dtype))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        (b"\x00\x00", "not an IDX file"),
        (b"PK\x03\x04abcd", "not an IDX file"),
        (b"\x00\x00\x07\x01\x00\x00\x00\x01\x00", "unknown IDX type code 0x07"),
        (b"\x00\x00\x08\x03\x00\x00\x00\x02", "truncated IDX header"),
        (b"\x00\x00\x08\x02\x00\x00\x00\x02\x00\x00\x00\x02\x01\x02\x03", "payload has 3 bytes, "
         "expected 4"),
        (b"\x1f\x8b\x08garbage", "corrupt gzip"),
    ],
    ids=["missing", "short", "zip", "type", "header", "payload", "gzip"],
)
def test_bad_idx_files(tmp_path: Path, content: bytes | None, message: str) -> None:
    path = tmp_path / "bad.idx"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ValueError, match=message) as error:
        load_data(str(path))
    assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_bad_npz_files(tmp_path: Path, images: np.ndarray) -> None:
    two = tmp_path / "two.npz"
    np.savez(two, a=images, b=images)
    with pytest.raises(ValueError, match=r"two.npz: expected an array named 'images'"):
        load_data(str(two))
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"not a zip archive")
    with pytest.raises(ValueError, match=r"broken.npz: not a readable .npz"):
        load_data(str(broken))
    labels = tmp_path / "labels.npz"
    np.savez(labels, images=np.arange(10))
    with pytest.raises(ValueError, match=r"labels.npz: expected an array of images"):
        load_data(str(labels))
    with pytest.raises(ValueError, match=r"expected values in 0..1 or 0..255, got -1..3"):
        to_intensities(np.array([[[-1.0, 3.0]]]), "x.npz")
    other = tmp_path / "other.npz"
    np.savez(other, images=np.zeros((3, 2, 2)))
    ok = tmp_path / "ok.npz"
    np.savez(ok, images=images)
    with pytest.raises(ValueError, match=r"test images have 4 pixels.*expected 20"):
        load_data(str(ok), test_source=str(other))
    with pytest.raises(ValueError, match="unknown binarization 'otsu'"):
        load_data(str(ok), binarize="otsu")
