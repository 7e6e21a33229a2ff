"""Arrays for tests: an .npz's bytes, forged .npz files for the memory guard rails, and Gaussian blobs."""

import io
import zipfile

import numpy as np
from numpy.lib import format as npy_format


def npz_bytes(**arrays) -> bytes:
    """The bytes of an .npz holding `arrays` (as `np.savez` writes it)."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def npy_header(shape, dtype="<f8") -> bytes:
    buffer = io.BytesIO()
    npy_format.write_array_header_1_0(buffer, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buffer.getvalue()  # the magic string, then the padded header


def lying_npz(shape=(2**20, 2**20)) -> bytes:
    """A tiny .npz whose X.npy header declares `shape` of float64 (8 TiB by default) over 16 bytes of data."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("X.npy", npy_header(shape) + bytes(16))
        archive.writestr("y.npy", npy_header((2,)) + bytes(16))
    return buffer.getvalue()


def zip_bomb(rows: int, columns: int) -> bytes:
    """A deflated .npz whose X is rows x columns float64 zeros: honest headers, ~1000:1 compression."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open("X.npy", "w", force_zip64=True) as member:
            member.write(npy_header((rows, columns)))
            row = bytes(columns * 8)
            for _ in range(rows):
                member.write(row)
        archive.writestr("y.npy", npy_header((rows,)) + bytes(rows * 8))
    return buffer.getvalue()


def blobs_around(centers, per_class=100, spread=0.5, seed=0):
    """Gaussian blobs around `centers` (k, n0) -> X (k * per_class, n0), y (k * per_class,) in shuffled order."""
    rng = np.random.RandomState(seed)
    centers = np.asarray(centers, dtype=float)
    X = np.concatenate([center + spread * rng.randn(per_class, centers.shape[1]) for center in centers])
    y = np.repeat(np.arange(len(centers)), per_class)
    order = rng.permutation(len(y))
    return X[order], y[order]
