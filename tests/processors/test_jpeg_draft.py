"""Large JPEGs decode in DCT-scaled draft mode down to what the processor keeps: same output
within rounding (PSNR), only when the source is at least twice the needed size, a clean skip for
broken files, and a feature-cache identity that changes with the setting."""

from __future__ import annotations

import io
import math

import numpy as np
import pyarrow as pa
import pytest
import torch
from PIL import Image

from lavis.datasets.bad_data import SkippedSample
from lavis.datasets.image_io import decode_size, load_image, load_image_bytes
from lavis.processors.image_processors import PathologyImageEval, PathologyImageTrain


def tissue_jpeg(width: int, height: int, quality: int = 90) -> bytes:
    """A JPEG frame of real tissue (scikit-image's IHC section, tiled to the frame size)."""
    from skimage import data

    section = data.immunohistochemistry()  # 512 x 512, full of structure
    tiled = np.tile(section, (math.ceil(height / 512), math.ceil(width / 512), 1))[:height, :width]
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(tiled)).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def eval_processor(size: int = 224, **extra) -> PathologyImageEval:
    return PathologyImageEval.from_config({"name": "pathology_image_eval", "image_size": size, **extra})


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a - b) ** 2).mean())
    return 10 * math.log10(1.0 / mse)


def pixels(processor: PathologyImageEval, image: Image.Image) -> torch.Tensor:
    """The processor's output back in [0, 1] pixel units (undo the normalisation)."""
    return processor(image) * processor._std + processor._mean


def test_processors_declare_the_smallest_lossless_source_size():
    assert eval_processor(224).decode_size() == (224, 224)
    assert eval_processor(224, jpeg_draft=False).decode_size() is None
    train = PathologyImageTrain.from_config({"name": "pathology_image_train", "image_size": 224, "min_scale": 0.5})
    side = train.decode_size()[0]
    assert side == math.ceil(224 / math.sqrt(0.5 * 3 / 4)) == 366  # the smallest crop still covers 224 px
    assert decode_size(object()) is None  # an unknown processor: full decode


@pytest.mark.parametrize("frame, expected", [((1280, 720), (640, 360)), ((1920, 1080), (480, 270)), ((400, 300), (400, 300))])
def test_draft_reduces_only_sources_at_least_twice_the_target(frame, expected):
    data = tissue_jpeg(*frame)
    image = load_image_bytes(data, "frame.jpg", draft=(224, 224))
    assert image.size == expected and image.mode == "RGB"
    assert load_image_bytes(data, "frame.jpg").size == frame


def test_png_is_never_drafted(tmp_path):
    path = tmp_path / "frame.png"
    Image.open(io.BytesIO(tissue_jpeg(1280, 720))).save(path)
    assert load_image(path, draft=(224, 224)).size == (1280, 720)


@pytest.mark.parametrize("frame", [(1280, 720), (1920, 1080)])
def test_transform_output_stays_within_rounding_of_a_full_decode(frame):
    data = tissue_jpeg(*frame)
    processor = eval_processor(224)
    full = pixels(processor, load_image_bytes(data, "f.jpg"))
    drafted = pixels(processor, load_image_bytes(data, "f.jpg", draft=processor.decode_size()))
    assert not torch.equal(full, drafted)
    assert psnr(full, drafted) >= 35.0


def test_truncated_jpeg_is_still_skipped_in_draft_mode():
    data = tissue_jpeg(1280, 720)
    result = load_image_bytes(data[: len(data) // 2], "cut.jpg", draft=(224, 224))
    assert isinstance(result, SkippedSample) and "truncated" in result.reason


def test_tables_decode_with_their_processor_and_the_cache_keys_on_the_setting(tmp_path):
    from lavis.datasets.datasets.sample_table import SampleTable
    from lavis.datasets.feature_store import transform_identity

    (tmp_path / "frame.jpg").write_bytes(tissue_jpeg(1280, 720))
    table = pa.table({"image_path": ["frame.jpg"], "text_input": ["q"]})
    drafted, plain = eval_processor(56), eval_processor(56, jpeg_draft=False)
    item = SampleTable(table, tmp_path, vis_processor=drafted)[0]["image"]
    reference = drafted(load_image(tmp_path / "frame.jpg", draft=(56, 56)))
    assert torch.equal(item, reference)
    assert not torch.equal(SampleTable(table, tmp_path, vis_processor=plain)[0]["image"], item)
    assert transform_identity(drafted) != transform_identity(plain)  # a cache built one way is not read the other
