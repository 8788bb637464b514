"""Applications built on the library: talking to a trained model (``inference`` and its front
ends ``serve``, ``chat``, ``predict``), whole-slide analysis (``slides``), the pre-flight check
(``doctor``) and the ``make demo`` pipeline (``demo``).

The library (``lavis.common`` ... ``lavis.runners``) never imports from here; ``import lavis``
does not load these. ``python -m lavis.serve`` (and ``chat``, ``predict``, ``slides``, ``doctor``)
are short names for the commands here.
"""
