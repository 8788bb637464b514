"""Pictures of a finished question: the heatmap over the thumbnail and the top tiles.

Both are drawn with matplotlib's object API on the Agg canvas (no pyplot state, no display) and
returned as PNG bytes for an atomic write.
"""

from __future__ import annotations

import io
import textwrap
from collections.abc import Callable

import numpy as np
import pandas as pd
from PIL import Image

SCORE_LABELS = {"closed": "P(yes)", "retrieval": "ITC similarity"}
OVERLAY_ALPHA = 0.55


def _figure(width: float, height: float, layout: str | None = None):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=110, layout=layout)
    FigureCanvasAgg(figure)
    return figure


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight")
    return buffer.getvalue()


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()


def score_raster(frame: pd.DataFrame, values: np.ndarray, shape: tuple[int, int], origin: tuple[int, int],
                 downsample: tuple[float, float]) -> np.ndarray:
    """Per thumbnail pixel, the mean of ``values`` over the tiles covering it (NaN where none)."""
    total = np.zeros(shape, dtype=np.float64)
    count = np.zeros(shape, dtype=np.int64)
    dx, dy = downsample
    for x, y, size, value in zip(frame["x"], frame["y"], frame["size"], values, strict=True):
        if np.isnan(value):
            continue
        c0, r0 = int((x - origin[0]) / dx), int((y - origin[1]) / dy)
        c1, r1 = int(np.ceil((x + size - origin[0]) / dx)), int(np.ceil((y + size - origin[1]) / dy))
        total[r0:r1, c0:c1] += value
        count[r0:r1, c0:c1] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def heatmap_png(thumbnail: Image.Image, origin: tuple[int, int], downsample: tuple[float, float],
                frame: pd.DataFrame, mode: str, title: str, subtitle: str) -> bytes:
    """The thumbnail with each tile's score (closed, retrieval) or answer (open) laid over it."""
    import matplotlib

    width_px, height_px = thumbnail.size
    fig_w = 7.0
    figure = _figure(fig_w + 1.6, fig_w * height_px / width_px + 1.2)
    axes = figure.add_subplot(1, 1, 1)
    axes.imshow(np.asarray(thumbnail))
    shape = (height_px, width_px)
    if mode == "open":
        answers = frame["answer"].fillna("").astype(str)
        common = answers.value_counts().index[:9].tolist()
        codes = np.array([common.index(a) if a in common else len(common) for a in answers], dtype=np.float64)
        raster = score_raster(frame, codes, shape, origin, downsample)
        palette = [matplotlib.colormaps["tab10"](i) for i in range(len(common))] + [(0.6, 0.6, 0.6, 1.0)]
        cmap = matplotlib.colors.ListedColormap(palette)
        axes.imshow(raster, cmap=cmap, vmin=-0.5, vmax=len(palette) - 0.5, alpha=OVERLAY_ALPHA, interpolation="nearest")
        from matplotlib.patches import Patch

        labels = [textwrap.shorten(a or "(empty)", 40) for a in common] + (["other"] if len(common) < len(set(answers)) else [])
        axes.legend(handles=[Patch(color=palette[i], label=label) for i, label in enumerate(labels)],
                    loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    else:
        values = frame["score"].to_numpy(dtype=np.float64)
        raster = score_raster(frame, values, shape, origin, downsample)
        if mode == "closed":
            vmin, vmax, cmap = 0.0, 1.0, "RdYlBu_r"
        else:
            finite = values[np.isfinite(values)]
            vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
            vmax = vmax if vmax > vmin else vmin + 1e-6
            cmap = "viridis"
        image = axes.imshow(raster, cmap=cmap, vmin=vmin, vmax=vmax, alpha=OVERLAY_ALPHA, interpolation="nearest")
        from mpl_toolkits.axes_grid1 import make_axes_locatable

        bar_axes = make_axes_locatable(axes).append_axes("right", size="3%", pad=0.08)  # as tall as the image
        bar = figure.colorbar(image, cax=bar_axes)
        bar.solids.set_alpha(1.0)
        bar.set_label(SCORE_LABELS.get(mode, "score"))
    axes.set_title("\n".join(textwrap.wrap(title, 70)), fontsize=12)
    axes.set_xlabel(subtitle, fontsize=8)
    axes.set_xticks([])
    axes.set_yticks([])
    return _png(figure)


def top_rows(frame: pd.DataFrame, mode: str, k: int) -> pd.DataFrame:
    """The k highest-scoring tiles; for open answers, tiles taken in turn from each answer, the most
    frequent answer first, so that the picture shows the range of answers."""
    if mode != "open":
        return frame.sort_values(["score", "tile"], ascending=[False, True], kind="stable").head(k)
    answers = frame["answer"].fillna("").astype(str)
    groups = [list(frame.index[answers == a]) for a in answers.value_counts().index]
    picks: list[int] = []
    for depth in range(max((len(g) for g in groups), default=0)):
        picks.extend(g[depth] for g in groups if depth < len(g))
        if len(picks) >= k:
            break
    return frame.loc[picks[:k]]


def top_tiles_png(rows: pd.DataFrame, read: Callable[[int, int], Image.Image], mode: str, title: str) -> bytes:
    """A grid of the tiles in ``rows`` (as the model saw them) with rank, score, place and answer."""
    count = max(1, len(rows))
    cols = min(4, count)
    lines = 6
    figure = _figure(3.0 * cols, (3.0 + 0.16 * lines) * ((count + cols - 1) // cols) + 0.4, layout="constrained")
    for i, row in enumerate(rows.itertuples(index=False)):
        axes = figure.add_subplot((count + cols - 1) // cols, cols, i + 1)
        axes.imshow(np.asarray(read(int(row.x), int(row.y))))
        axes.set_xticks([])
        axes.set_yticks([])
        label = SCORE_LABELS.get(mode)
        head = f"#{i + 1}  {label} {row.score:.3f}" if label and np.isfinite(row.score) else f"#{i + 1}"
        answer = "" if row.answer is None or row.answer is pd.NA else str(row.answer)
        text = [head, f"x={row.x}, y={row.y}"] + textwrap.wrap(answer, 34)[: lines - 2]
        axes.set_xlabel("\n".join(text), fontsize=8, loc="left")
    figure.suptitle("\n".join(textwrap.wrap(title, 90)), fontsize=11)
    return _png(figure)
