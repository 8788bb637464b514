"""Weight interop: Hugging Face BLIP-2 / InstructBLIP checkpoints (:func:`from_hf`, :func:`to_hf`),
LAVIS ``.pth`` layouts (read by ``model.load_checkpoint``, see :mod:`.layouts`) and our
self-describing model folders (:func:`save_model_folder`, :func:`load_model_folder`);
``python -m lavis.models.convert`` puts a command line on top."""

from lavis.models.interop.folder import load_model_folder, save_model_folder  # noqa: F401
from lavis.models.interop.hf_export import to_hf  # noqa: F401
from lavis.models.interop.hf_load import from_hf  # noqa: F401
