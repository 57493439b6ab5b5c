"""Image data for the discrete VAE problems: a built-in default and local files.

* ``digits`` (default, no download): scikit-learn's bundled 8 x 8 handwritten digits
  (1797 images, grey levels 0..16), scaled to intensities in [0, 1].
* A local file: IDX (the MNIST format, gzipped or not) or ``.npz`` holding an array of
  images: intensities in [0, 1] (binary images included), or grey levels 0..255 (whole
  numbers, whatever the dtype). Anything else (values above 1 that are not whole numbers,
  a structured array, a file larger than half the memory) is refused in one line.

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
import os
import zipfile
import zlib
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
        except (OSError, EOFError, zlib.error) as error:
            raise ValueError(f"{path}: corrupt gzip data ({error})") from None
        except MemoryError:
            raise ValueError(f"{path}: too large to decompress in the memory available") \
                from None
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
    _check_file(path, "an .npz file")
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ValueError(f"{path}: not a readable .npz archive ({first})") from None
    except MemoryError:
        raise ValueError(f"{path}: too large to load in the memory available") from None
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise ValueError(
            f"{path}: a single .npy array, not an .npz archive; save the images with "
            "numpy.savez(path, images=array)"
        )
    try:
        with loaded as archive:
            keys = list(archive.keys())
            name = "images" if "images" in keys else keys[0] if len(keys) == 1 else None
            if name is not None:
                return archive[name]  # reads the whole member: a torn one fails its CRC here
    except (OSError, ValueError, EOFError, zlib.error, zipfile.BadZipFile) as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ValueError(f"{path}: not a readable .npz archive ({first})") from None
    except MemoryError:
        raise ValueError(f"{path}: too large to load in the memory available") from None
    raise ValueError(
        f"{path}: expected an array named 'images' or exactly one array, found {keys or 'none'}"
    )


def _available_memory() -> int | None:
    """Bytes of physical memory, or None where the OS does not say."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _check_file(path: Path, what: str) -> None:
    if not path.is_file():
        raise ValueError(f"{path}: no such file (expected {what})")
    size, memory = path.stat().st_size, _available_memory()
    if memory is not None and size > memory // 2:
        raise ValueError(
            f"{path}: {size / 2**30:.1f} GiB, more than half of the {memory / 2**30:.1f} GiB "
            "of memory here; use a smaller file"
        )


def _read_bytes(path: Path, what: str) -> bytes:
    _check_file(path, what)
    try:
        return path.read_bytes()
    except MemoryError:
        raise ValueError(f"{path}: too large to load in the memory available") from None


def to_intensities(images: np.ndarray, source: str) -> np.ndarray:
    """``[N, H, W]`` or ``[N, D]`` images -> ``[N, D]`` float32 intensities in [0, 1].

    Values in [0, 1] are intensities (binary images included, whatever the dtype); whole
    numbers up to 255 are grey levels, divided by 255; anything else is refused rather
    than guessed at (dividing 0..1.5 by 255 would binarize every pixel to 0).

    Raises:
        ValueError: for a non-numeric (e.g. structured) array, fewer than 2 dimensions, no
            images, non-finite values, or values that are neither intensities nor grey levels.
    """
    if images.dtype.kind not in "biuf":
        raise ValueError(
            f"{source}: expected a numeric array of images, got dtype {images.dtype} "
            "(a structured or object array)"
        )
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
    if high > 1:
        if not np.all(values == np.round(values)):
            raise ValueError(
                f"{source}: values in {low:g}..{high:g} are neither intensities in [0, 1] nor "
                "whole grey levels 0..255; scale them to [0, 1]"
            )
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
