"""Image data for the discrete VAE problems: a built-in default and local files.

* ``digits`` (default, no download): scikit-learn's bundled 8 x 8 handwritten digits
  (1797 images, grey levels 0..16), scaled to intensities in [0, 1].
* A local file: IDX (the MNIST format, gzipped or not) or ``.npz`` holding an array of
  images with values in 0..1 or 0..255.

Images are flattened to ``[N, H * W]`` intensities in [0, 1] and binarized either once with
the fixed threshold 1/2 (``threshold``) or by drawing every pixel as Bernoulli(intensity)
each time a minibatch is used (``dynamic``; Salakhutdinov & Murray 2008). The train/test
split of a single file is a fixed, seeded permutation.

IDX format (LeCun et al., http://yann.lecun.com/exdb/mnist/): a big-endian header of two
zero bytes, a type code (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32,
0x0E float64), the number of dimensions n, then n big-endian uint32 sizes, then the data.

References: Salakhutdinov & Murray (2008), "On the Quantitative Analysis of Deep Belief
Networks", ICML (dynamic binarization); Alpaydin & Kaynak (1998), UCI optical recognition
of handwritten digits (the scikit-learn digits).
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

BINARIZATIONS = ("threshold", "dynamic")
BUILTIN = "digits"

#: IDX type code -> big-endian numpy dtype
IDX_DTYPES: dict[int, str] = {
    0x08: ">u1",
    0x09: ">i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}
GZIP_MAGIC = b"\x1f\x8b"


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (gzipped or not, detected from its first bytes) into an array.

    Raises:
        ValueError: one line naming the file, for a missing file or a malformed header or
            payload.
    """
    path = Path(path)
    raw = _read_bytes(path, "an IDX file")
    if raw[:2] == GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as error:
            raise ValueError(f"{path}: corrupt gzip data ({error})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(
            f"{path}: not an IDX file: expected the magic number 0x0000TTNN "
            f"(two zero bytes, type code, dimension count), got {raw[:4].hex() or 'no bytes'}"
        )
    code, n_dims = raw[2], raw[3]
    if code not in IDX_DTYPES:
        valid = ", ".join(f"0x{c:02X}" for c in IDX_DTYPES)
        raise ValueError(f"{path}: unknown IDX type code 0x{code:02X}; valid codes: {valid}")
    if n_dims == 0:
        raise ValueError(f"{path}: IDX header declares 0 dimensions, expected at least 1")
    header = 4 + 4 * n_dims
    if len(raw) < header:
        raise ValueError(f"{path}: truncated IDX header: {n_dims} sizes declared")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=n_dims, offset=4))
    dtype = np.dtype(IDX_DTYPES[code])
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(raw) - header != expected:
        raise ValueError(
            f"{path}: IDX payload has {len(raw) - header} bytes, expected {expected} "
            f"for shape {dims} of {dtype.name}"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)


def read_npz(path: str | Path) -> np.ndarray:
    """The image array of an ``.npz`` file: the array named ``images``, or its only array.

    Raises:
        ValueError: for a missing or unreadable file, or when no array is clearly the images.
    """
    path = Path(path)
    _read_bytes(path, "an .npz file")
    try:
        with np.load(path, allow_pickle=False) as archive:
            keys = list(archive.keys())
            if "images" in keys:
                return archive["images"]
            if len(keys) == 1:
                return archive[keys[0]]
    except (OSError, ValueError) as error:
        raise ValueError(f"{path}: not a readable .npz archive ({error})") from None
    raise ValueError(
        f"{path}: expected an array named 'images' or exactly one array, found {keys or 'none'}"
    )


def _read_bytes(path: Path, what: str) -> bytes:
    if not path.is_file():
        raise ValueError(f"{path}: no such file (expected {what})")
    return path.read_bytes()


def to_intensities(images: np.ndarray, source: str) -> np.ndarray:
    """``[N, H, W]`` or ``[N, D]`` images with values in 0..1 or 0..255 -> ``[N, D]`` float32
    in [0, 1]. Integer arrays and arrays with a maximum above 1 are divided by 255.

    Raises:
        ValueError: for fewer than 2 dimensions, no images, or values outside 0..255.
    """
    if images.ndim < 2:
        raise ValueError(
            f"{source}: expected an array of images [N, H, W] or [N, D], got shape {images.shape}"
        )
    if images.shape[0] == 0 or images[0].size == 0:
        raise ValueError(f"{source}: expected at least one non-empty image, got {images.shape}")
    values = images.reshape(images.shape[0], -1).astype(np.float64)
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{source}: image values must be finite")
    low, high = values.min(), values.max()
    if low < 0 or high > 255:
        raise ValueError(f"{source}: expected values in 0..1 or 0..255, got {low:g}..{high:g}")
    if np.issubdtype(images.dtype, np.integer) or high > 1:
        values = values / 255.0
    return values.astype(np.float32)


def load_images(source: str) -> tuple[np.ndarray, tuple[int, ...]]:
    """Intensities ``[N, D]`` in [0, 1] and the image shape, from ``digits`` or a file path."""
    if source == BUILTIN:
        from sklearn.datasets import load_digits

        images = load_digits().images  # [1797, 8, 8], values 0..16
        return (images.reshape(len(images), -1) / 16.0).astype(np.float32), images.shape[1:]
    path = Path(source)
    images = read_npz(path) if path.suffix == ".npz" else read_idx(path)
    return to_intensities(images, str(path)), tuple(images.shape[1:])


@dataclass(frozen=True)
class ImageData:
    """Train and test intensities ``[N, D]`` in [0, 1] with a binarization rule.

    Attributes:
        train: ``[N_train, D]``.
        test: ``[N_test, D]``, binarized once (a fixed draw for ``dynamic``) so that test
            metrics are comparable across evaluations.
        image_shape: e.g. ``(8, 8)``.
        binarize: ``threshold`` or ``dynamic``.
    """

    train: Tensor
    test: Tensor
    image_shape: tuple[int, ...]
    binarize: str

    @property
    def n_pixels(self) -> int:
        return self.train.shape[1]

    def binary(self, intensities: Tensor, generator: torch.Generator) -> Tensor:
        """Binarize ``[..., D]`` intensities: threshold 1/2, or Bernoulli draws with
        ``generator`` (dynamic)."""
        if self.binarize == "threshold":
            return (intensities >= 0.5).to(intensities.dtype)
        draws = torch.rand(intensities.shape, generator=generator, dtype=intensities.dtype)
        return (draws.to(intensities.device) < intensities).to(intensities.dtype)

    def train_batch(self, size: int, generator: torch.Generator) -> Tensor:
        """A binarized training minibatch ``[size, D]`` drawn without replacement."""
        index = torch.randperm(self.train.shape[0], generator=generator)[:size]
        return self.binary(self.train[index.to(self.train.device)], generator)


def load_data(
    source: str,
    *,
    test_source: str = "",
    test_fraction: float = 0.2,
    binarize: str = "threshold",
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
) -> ImageData:
    """Load, split and prepare data.

    Args:
        source: ``digits`` or the path of an IDX or ``.npz`` file of images.
        test_source: a separate test file; if empty, a seeded ``test_fraction`` of ``source``
            is held out.
        test_fraction: share of ``source`` held out as test set when ``test_source`` is empty.
        binarize: ``threshold`` or ``dynamic``.
        seed: seed of the split and of the fixed binarization of the test set.

    Raises:
        ValueError: for a bad file (see ``read_idx``, ``read_npz``), an unknown binarization,
            mismatched image sizes or a split that leaves a side empty.
    """
    if binarize not in BINARIZATIONS:
        raise ValueError(
            f"unknown binarization {binarize!r}; valid choices: {', '.join(BINARIZATIONS)}"
        )
    images, shape = load_images(source)
    generator = torch.Generator().manual_seed(seed)
    if test_source:
        train, (test, test_shape) = images, load_images(test_source)
        if test.shape[1] != train.shape[1]:
            raise ValueError(
                f"{test_source}: test images have {test.shape[1]} pixels ({test_shape}), "
                f"expected {train.shape[1]} like {source} ({shape})"
            )
    else:
        n_test = round(test_fraction * len(images))
        if not 0 < n_test < len(images):
            raise ValueError(
                f"{source}: test_fraction={test_fraction} of {len(images)} images leaves an "
                "empty train or test set"
            )
        order = torch.randperm(len(images), generator=generator).numpy()
        test, train = images[order[:n_test]], images[order[n_test:]]
    data = ImageData(
        train=torch.as_tensor(train, dtype=dtype, device=device),
        test=torch.as_tensor(test, dtype=dtype, device=device),
        image_shape=tuple(shape),
        binarize=binarize,
    )
    return ImageData(
        train=data.train,
        test=data.binary(data.test, generator),
        image_shape=data.image_shape,
        binarize=binarize,
    )
