"""The image-blind processor of the question-only baseline must really hide the image."""

import numpy as np
import torch
from PIL import Image
from skimage import data

from lavis.processors import build_processor


def test_blank_image_outputs_the_normalised_mean_whatever_the_input():
    blank = build_processor({"name": "blank_image", "image_size": 48}, "vis")
    seeing = build_processor({"name": "pathology_image_eval", "image_size": 48}, "vis")
    tissue = data.immunohistochemistry()
    rng = np.random.default_rng(0)
    inputs = [
        Image.fromarray(tissue[:200, :200]),
        Image.fromarray(tissue[300:, 100:400]),  # another size and content
        Image.fromarray(rng.integers(0, 256, (31, 77, 3), dtype=np.uint8)),
        Image.new("RGB", (5, 5), (255, 255, 255)),
    ]
    outputs = [blank(image) for image in inputs]
    assert not torch.equal(seeing(inputs[0]), seeing(inputs[1]))  # the inputs do differ to a seeing processor
    for out in outputs:
        assert out.shape == (3, 48, 48) and out.dtype == torch.float32
        assert torch.equal(out, outputs[0])  # independent of the input
    # every pixel is the normalisation mean, i.e. what the eval transform makes of a mean-coloured image
    mean_colour = tuple(round(255 * m) for m in seeing.cfg.mean)
    mean_image = seeing(Image.new("RGB", (48, 48), mean_colour))
    assert torch.allclose(outputs[0], mean_image, atol=0.5 / 255 / min(seeing.cfg.std))
    assert torch.equal(outputs[0], torch.zeros(3, 48, 48))


def test_blank_image_ignores_custom_normalisation_too():
    blank = build_processor({"name": "blank_image", "image_size": 8, "mean": [0.2, 0.3, 0.4], "std": [0.1] * 3}, "v")
    assert torch.equal(blank(Image.new("RGB", (4, 4), (0, 0, 0))), torch.zeros(3, 8, 8))
