"""Codes as features: TensorBoard's embedding projector, linear probes, and 2-D embedding quality.

* :func:`write_projector` writes codes, labels and a sprite of the inputs where TensorBoard's
  projector finds them (``tensorboard --logdir runs/`` → "Projector"):

      TB/projector_config.pbtxt        one ``embeddings`` entry per tag (other tags are kept)
      TB/<tag>/tensors.tsv             the codes, one row per example, tab-separated
      TB/<tag>/metadata.tsv            one label per line
      TB/<tag>/sprite.png              the inputs tiled row-major, ceil(√N) per row, no gaps (images only)

* :func:`linear_probe`: accuracy of a multinomial logistic regression (scikit-learn) trained on
  the codes of n labelled training examples (a class-stratified subset, fixed seed) and tested on
  the test codes — the standard measure of how linearly separable the classes are in a code.
* :func:`trustworthiness`: scikit-learn's trustworthiness T(k) of a 2-D embedding (Venna & Kaski
  2001): 1 when the k nearest neighbours in the embedding are neighbours in the input space too.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .runs import atomic_write, atomic_write_text

CONFIG = "projector_config.pbtxt"


def _sprite(images: np.ndarray) -> np.ndarray:
    """(N, C, H, W) in [0, 1] → one (rows·H, cols·W, 3) uint8 sprite, cols = ceil(√N), unused tiles black."""
    n, c, h, w = images.shape
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    canvas = np.zeros((rows * h, cols * w, 3), dtype=np.uint8)
    tiles = (np.clip(images, 0, 1) * 255).round().astype(np.uint8).transpose(0, 2, 3, 1)  # (N, H, W, C)
    if c == 1:
        tiles = np.repeat(tiles, 3, axis=-1)
    for i in range(n):
        r, k = divmod(i, cols)
        canvas[r * h:(r + 1) * h, k * w:(k + 1) * w] = tiles[i, :, :, :3]
    return canvas


def write_projector(folder: str | Path, codes: np.ndarray, data, *, limit: int = 10000, tag: str = "codes") -> Path:
    """Codes (N, J) of the rows of ``data`` (an ArrayDataset) as a projector embedding named ``tag``."""
    import matplotlib.pyplot as plt
    from google.protobuf import text_format
    from tensorboard.plugins.projector.projector_config_pb2 import ProjectorConfig

    folder = Path(folder)
    n = min(len(codes), limit)
    codes = np.asarray(codes[:n], dtype=np.float32)
    sub = folder / tag
    sub.mkdir(parents=True, exist_ok=True)
    atomic_write_text(sub / "tensors.tsv", "\n".join("\t".join(f"{v:.6g}" for v in row) for row in codes) + "\n")
    labels = None if data.y is None else data.y[:n].cpu().numpy()
    if labels is not None:
        atomic_write_text(sub / "metadata.tsv", "\n".join(str(int(v)) for v in labels) + "\n")
    if data.image_shape is not None:
        images = data.x[:n].cpu().numpy().reshape(n, *data.image_shape)
        sprite = _sprite(images)
        atomic_write(sub / "sprite.png", lambda f: plt.imsave(f, sprite, format="png"))
    config = ProjectorConfig()
    path = folder / CONFIG
    if path.is_file():
        text_format.Parse(path.read_text(), config)
    kept = [e for e in config.embeddings if e.tensor_name != tag]
    del config.embeddings[:]
    config.embeddings.extend(kept)
    entry = config.embeddings.add()
    entry.tensor_name = tag
    entry.tensor_path = f"{tag}/tensors.tsv"
    if labels is not None:
        entry.metadata_path = f"{tag}/metadata.tsv"
    if data.image_shape is not None:
        entry.sprite.image_path = f"{tag}/sprite.png"
        entry.sprite.single_image_dim.extend([data.image_shape[2], data.image_shape[1]])  # width, height
    atomic_write_text(path, text_format.MessageToString(config))
    if not any(p.name.startswith("events.out.tfevents") for p in folder.iterdir()):
        # TensorBoard lists a folder as a run (and looks for its projector config) when it holds an event file.
        from torch.utils.tensorboard import SummaryWriter

        SummaryWriter(log_dir=str(folder)).close()
    return folder


def read_projector(folder: str | Path):
    """The ProjectorConfig written by :func:`write_projector` (for tests and tools)."""
    from google.protobuf import text_format
    from tensorboard.plugins.projector.projector_config_pb2 import ProjectorConfig

    config = ProjectorConfig()
    text_format.Parse((Path(folder) / CONFIG).read_text(), config)
    return config


def stratified_subset(labels: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Indices of n examples with the classes in proportion (at least one per class), fixed by ``seed``."""
    from sklearn.model_selection import train_test_split

    if n >= len(labels):
        return np.arange(len(labels))
    idx, _ = train_test_split(np.arange(len(labels)), train_size=n, stratify=labels, random_state=seed)
    return np.sort(idx)


def linear_probe(train_codes: np.ndarray, train_labels: np.ndarray, test_codes: np.ndarray, test_labels: np.ndarray,
                 *, num_labels: int | None = None, seed: int = 0, max_iter: int = 1000) -> float:
    """Test accuracy of LogisticRegression fitted on ``num_labels`` labelled training codes (all if None).

    Codes are standardized with the statistics of the labelled subset (logistic regression's L2
    penalty assumes comparable feature scales).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    idx = stratified_subset(train_labels, num_labels or len(train_labels), seed)
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=max_iter))
    clf.fit(train_codes[idx], train_labels[idx])
    return float(clf.score(test_codes, test_labels))


def trustworthiness(inputs: np.ndarray, embedding: np.ndarray, k: int = 5) -> float:
    from sklearn.manifold import trustworthiness as sk_trustworthiness

    return float(sk_trustworthiness(inputs, embedding, n_neighbors=k))
