"""Packaging for the CLOVER framework (import name ``lavis``).

Ranges here say what the code supports; requirements.txt pins the tested set.
"""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent

setup(
    name="clover-lavis",
    version="0.1.0",
    description="Cost-effective instruction learning for pathology vision-language models (BLIP-2 style).",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    # configs/ stays at the repository root (every doc names it so) and ships inside the wheel as
    # the data package lavis.configs: lavis.common.paths.config_root() finds either.
    packages=[*find_packages(include=["lavis", "lavis.*"]), "lavis.configs"],
    package_dir={"lavis.configs": "configs"},
    include_package_data=True,
    install_requires=[
        "torch>=2.4",
        "torchvision>=0.19",
        "transformers>=5.0,<6",
        "huggingface_hub>=1.0",
        "safetensors>=0.4",
        "sentencepiece>=0.2",
        "protobuf>=4",
        "timm>=1.0",
        "open_clip_torch>=2.24",
        "omegaconf>=2.3",
        "webdataset>=1.0",
        "pycocoevalcap>=1.2",
        "nltk>=3.8",
        "tqdm>=4.60",
        "numpy>=1.24",
        "pillow>=10",
        "pyarrow>=14",
        "pandas>=2.0",
        "starlette>=0.40",
        "uvicorn>=0.30",
        "httptools>=0.6",  # uvicorn picks these up: a C HTTP parser and event loop (see requirements.txt)
        "uvloop>=0.19; sys_platform != 'win32'",
    ],
    package_data={"lavis.apps.serve": ["static/*"], "lavis.configs": ["**/*.yaml"]},
    # The top-level scripts (train.py, evaluate.py, ...) stay; these are the same commands on PATH.
    entry_points={
        "console_scripts": [
            "lavis-train = lavis.cli.scripts:train",
            "lavis-train-stage1 = lavis.cli.scripts:train_stage1",
            "lavis-evaluate = lavis.cli.scripts:evaluate",
            "lavis-generate-instructions = lavis.instructions.cli:main",
            "lavis-serve = lavis.apps.serve.__main__:main",
            "lavis-chat = lavis.apps.chat:main",
            "lavis-predict = lavis.apps.predict:main",
            "lavis-slides = lavis.apps.slides.cli:main",
            "lavis-doctor = lavis.apps.doctor.__main__:main",
        ]
    },
    extras_require={
        "instructions": ["openai>=1.30", "matplotlib>=3.7"],
        "demo": ["openslide-python>=1.3", "openslide-bin>=4", "scikit-image>=0.22", "matplotlib>=3.7", "openai>=1.30"],
        "slides": ["openslide-python>=1.3", "openslide-bin>=4", "scikit-image>=0.22", "scipy>=1.10", "matplotlib>=3.7"],
        "tensorboard": ["tensorboard>=2.14"],
        "dev": ["pytest>=8", "ruff>=0.5", "playwright>=1.45", "mkdocs>=1.6"],
    },
)
