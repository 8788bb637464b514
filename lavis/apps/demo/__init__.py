"""The embedded demo: CLOVER end to end on real pathology pixels on a laptop CPU.

``run_demo.py`` (``make demo``) calls :func:`lavis.apps.demo.pipeline.main`.
"""
