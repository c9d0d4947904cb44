"""Analysis of AEKT's task-serialization layer against the teacher's class similarity."""
from typing import Callable, Dict, List, Optional

import numpy as np
import torch
import torch.nn as nn

from mdistiller_ext.runs.checkpoint import state_dict_of


def serialization_matrix(state_dict: Dict[str, torch.Tensor]) -> np.ndarray:
    """The layer's C x C weight from a distiller state_dict (either SERIAL order, either decay mode)."""
    sd = state_dict_of(state_dict)
    for prefix in ("serial.", "student.serial."):
        if prefix + "delta" in sd:
            delta = sd[prefix + "delta"].double()
            return (torch.eye(delta.shape[0], dtype=torch.float64) + delta).numpy()
        if prefix + "weight" in sd:
            return sd[prefix + "weight"].double().numpy()
    raise KeyError("no serialization layer in this checkpoint (AEKT.SERIAL none, or not an AEKT run)")


@torch.no_grad()
def class_similarity(teacher: nn.Module, loader, num_classes: int, device: torch.device,
                     temperature: float = 1.0, progress: Optional[Callable[[], None]] = None) -> np.ndarray:
    """sim[c, k] = the teacher's mean softmax probability of class k over the images of ground-truth
    class c (at ``temperature``), rows normalised.

    Orientation: the layer computes z_kd = W z_cls + b, so W[i, j] carries the student's class-j
    logit into output class i; for an image of class j the KD head should put mass where the teacher
    does, sim[j, i]. W is therefore compared with sim.T (``oriented_similarity``)."""
    teacher.eval().to(device)
    sums = torch.zeros(num_classes, num_classes, dtype=torch.float64, device=device)
    counts = torch.zeros(num_classes, dtype=torch.float64, device=device)
    for batch in loader:
        image, target = batch[0].to(device).float(), batch[1].to(device)
        p = torch.softmax(teacher(image)[0].double() / temperature, dim=1)
        sums.index_add_(0, target, p)
        counts.index_add_(0, target, torch.ones_like(target, dtype=torch.float64))
        if progress is not None:
            progress()
    mean = sums / counts.clamp_min(1)[:, None]
    return (mean / mean.sum(1, keepdim=True).clamp_min(1e-300)).cpu().numpy()


def oriented_similarity(similarity: np.ndarray) -> np.ndarray:
    """The teacher similarity in W's orientation: entry [i, j] = sim[j, i] (see ``class_similarity``)."""
    return similarity.T.copy()


def correlation(a: np.ndarray, b: np.ndarray, off_diagonal: bool = True) -> float:
    """Pearson correlation of two C x C matrices (off-diagonal entries only by default)."""
    mask = ~np.eye(a.shape[0], dtype=bool) if off_diagonal else np.ones_like(a, dtype=bool)
    x, y = a[mask].astype(np.float64), b[mask].astype(np.float64)
    x, y = x - x.mean(), y - y.mean()
    denom = np.sqrt((x * x).sum() * (y * y).sum())
    return float((x * y).sum() / denom) if denom > 0 else float("nan")


def plot_heatmaps(serial: np.ndarray, similarity_w: np.ndarray, path: str, title: Optional[str] = None,
                  names: Optional[List[str]] = None) -> None:
    """Side by side, both in W's orientation (row: output class i, column: input class j) and both with
    the diagonal removed: W - I of the serialization layer and the teacher's similarity sim.T."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c = serial.shape[0]
    off = ~np.eye(c, dtype=bool)
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.6), dpi=100)
    panels = ((axes[0], serial - np.eye(c), "serialization layer W - I"),
              (axes[1], similarity_w, "teacher: mean p(class i | true class j)"))
    for ax, mat, name in panels:
        im = ax.imshow(np.where(off, mat, np.nan), cmap="viridis", interpolation="nearest")
        ax.set_title(name + " (diagonal removed)", fontsize=10)
        ax.set_xlabel("input class j (student logit / true class)")
        ax.set_ylabel("output class i")
        if names and len(names) == c and c <= 100:
            size = 7 if c <= 20 else 3
            ax.set_xticks(range(c))
            ax.set_yticks(range(c))
            ax.set_xticklabels(names, rotation=90, fontsize=size)
            ax.set_yticklabels(names, fontsize=size)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
