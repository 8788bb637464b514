import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data
from skimage.color import rgb2hed

from lavis.common.errors import ConfigError
from lavis.common.image_norm import CLIP_MEAN, CLIP_STD
from lavis.processors import build_processor
from lavis.processors.image_processors import random_dihedral
from lavis.processors.stain import hed_jitter, hed_to_rgb, rgb_to_hed


@pytest.fixture(scope="module")
def tissue():
    return data.immunohistochemistry()  # a real IHC slide image (H + DAB)


def test_eval_resizes_and_normalises_with_clip_stats(tissue):
    processor = build_processor({"name": "pathology_image_eval", "image_size": 64}, "vis")
    out = processor(Image.fromarray(tissue[:100, :150]))
    assert out.shape == (3, 64, 64) and out.dtype == torch.float32
    white = processor(Image.new("RGB", (10, 10), (255, 255, 255)))
    expected = (1 - torch.tensor(CLIP_MEAN)) / torch.tensor(CLIP_STD)
    assert torch.allclose(white[:, 0, 0], expected, atol=1e-6)


def test_mean_and_std_come_from_config():
    processor = build_processor({"name": "pathology_image_eval", "image_size": 8, "mean": [0.5] * 3, "std": [0.5] * 3}, "v")
    out = processor(Image.new("RGB", (4, 4), (0, 0, 0)))
    assert torch.allclose(out, torch.full((3, 8, 8), -1.0))


def test_train_output_shape_and_randomness(tissue):
    processor = build_processor({"name": "pathology_image_train", "image_size": 48, "stain_jitter": 0.05}, "vis")
    image = Image.fromarray(tissue[:200, :200])
    torch.manual_seed(0)
    first = processor(image)
    second = processor(image)
    assert first.shape == (3, 48, 48) and first.dtype == torch.float32
    assert not torch.equal(first, second)
    torch.manual_seed(0)
    assert torch.equal(processor(image), first)  # torch's RNG drives every random choice


def test_dihedral_transforms_keep_the_pixel_multiset(tissue):
    image = torch.from_numpy(tissue[:32, :32]).permute(2, 0, 1).float()
    outputs = set()
    for seed in range(40):
        torch.manual_seed(seed)
        out = random_dihedral(image)
        for channel in range(3):
            assert torch.equal(out[channel].flatten().sort().values, image[channel].flatten().sort().values)
        outputs.add(out.numpy().tobytes())
    assert len(outputs) == 8  # all symmetries of the square occur


def test_train_without_crop_or_jitter_only_permutes_pixels(tissue):
    # scale 1.0 on a square image: the crop is the whole image and the resize is to its own size,
    # so the processor's output is a rotation/flip of the input: the same pixels, rearranged.
    processor = build_processor(
        {"name": "pathology_image_train", "image_size": 32, "min_scale": 1.0, "mean": [0, 0, 0], "std": [1, 1, 1]}, "v"
    )
    square = Image.fromarray(tissue[:32, :32])
    reference = torch.from_numpy(tissue[:32, :32]).permute(2, 0, 1).float() / 255
    seen = set()
    for seed in range(12):
        torch.manual_seed(seed)
        out = processor(square)
        assert torch.equal(out.flatten(1).sort(dim=1).values, reference.flatten(1).sort(dim=1).values)
        seen.add(out.numpy().tobytes())
    assert len(seen) > 2


def test_hed_matches_scikit_image(tissue):
    rgb = torch.from_numpy(tissue[:64, :64]).permute(2, 0, 1).double() / 255
    ours = (rgb_to_hed(rgb) / -np.log(1e-6)).clamp(min=0).permute(1, 2, 0).numpy()
    assert np.allclose(ours, rgb2hed(tissue[:64, :64]), atol=1e-10)


def test_hed_jitter_at_strength_zero_is_identity(tissue):
    rgb = torch.from_numpy(tissue[:64, :64]).permute(2, 0, 1).float() / 255
    assert torch.allclose(hed_to_rgb(rgb_to_hed(rgb)), rgb, atol=1e-5)
    assert torch.allclose(hed_jitter(rgb, 0.0), rgb, atol=1e-5)
    torch.manual_seed(0)
    jittered = hed_jitter(rgb, 0.1)
    assert (jittered - rgb).abs().max() > 0.01 and jittered.min() >= 0 and jittered.max() <= 1


def test_hed_jitter_changes_stains_not_structure(tissue):
    rgb = torch.from_numpy(tissue[:64, :64]).permute(2, 0, 1).double() / 255
    torch.manual_seed(1)
    jittered = hed_jitter(rgb, 0.05)
    before, after = rgb_to_hed(rgb), rgb_to_hed(jittered)
    for channel in range(3):  # each stain map is an affine function of the original one
        x, y = before[channel].flatten(), after[channel].flatten()
        keep = (jittered.min(0).values.flatten() > 1e-3) & (jittered.max(0).values.flatten() < 1 - 1e-3)
        fit = np.polyfit(x[keep].numpy(), y[keep].numpy(), 1)
        assert np.abs(np.polyval(fit, x[keep].numpy()) - y[keep].numpy()).max() < 1e-6


def test_config_errors():
    with pytest.raises(ConfigError, match="min_scale"):
        build_processor({"name": "pathology_image_train", "min_scale": 0.0}, "datasets.x.vis_processor.train")
    with pytest.raises(ConfigError, match=r"unknown config key 'datasets\.x\.vis_processor\.eval\.min_scale'"):
        build_processor({"name": "pathology_image_eval", "min_scale": 0.5}, "datasets.x.vis_processor.eval")


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "CMYK"])
def test_non_rgb_images_are_converted_like_rgb_ones(tissue, mode):
    processor = build_processor({"name": "pathology_image_eval", "image_size": 32}, "vis")
    image = Image.fromarray(tissue[:64, :64]).convert(mode)
    assert torch.equal(processor(image), processor(image.convert("RGB")))


def test_rgb_images_are_not_copied_by_a_conversion(tissue, monkeypatch):
    processor = build_processor({"name": "pathology_image_eval", "image_size": 32}, "vis")
    image = Image.fromarray(tissue[:64, :64])
    expected = processor(image)

    def no_convert(self, *args, **kwargs):
        raise AssertionError("an RGB image was converted")

    monkeypatch.setattr(Image.Image, "convert", no_convert)
    assert torch.equal(processor(image), expected)
