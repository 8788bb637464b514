"""Dataset builders, one module per data set; importing this package registers them all."""

from lavis.datasets.builders import (  # noqa: F401
    clover_instructions,
    image_folder_vqa,
    llava_med,
    pathvqa,
    pmc_vqa,
    quilt1m,
    quilt1m_wds,
    quilt_vqa,
)
