import pytest

from lavis.common.errors import RegistryError
from lavis.common.registry import Registry


class Base:
    pass


def test_register_and_get():
    reg = Registry("widget", Base)

    @reg.register("alpha")
    class Alpha(Base):
        pass

    assert reg.get("alpha") is Alpha
    assert "alpha" in reg and reg.names() == ["alpha"]


def test_unknown_name_lists_known_names_and_suggests():
    reg = Registry("widget", Base)
    reg.add("blip2_t5", type("A", (Base,), {}))
    reg.add("blip2_vicuna", type("B", (Base,), {}))
    with pytest.raises(RegistryError) as err:
        reg.get("blip2_t6")
    message = str(err.value)
    assert "unknown widget 'blip2_t6'" in message
    assert "Did you mean 'blip2_t5'" in message
    assert "blip2_t5, blip2_vicuna" in message


def test_duplicate_name_refused_but_reregistering_same_class_is_fine():
    reg = Registry("widget", Base)
    cls = type("A", (Base,), {})
    reg.add("a", cls)
    reg.add("a", cls)  # module re-import
    with pytest.raises(RegistryError, match="already registered"):
        reg.add("a", type("Other", (Base,), {}))


def test_wrong_base_class_refused():
    reg = Registry("widget", Base)
    with pytest.raises(RegistryError, match="must subclass"):

        @reg.register("x")
        class NotAWidget:  # noqa: F841
            pass


def test_real_registries_hold_classes_only():
    import lavis
    from lavis.common.optim import LR_SCHEDULERS
    from lavis.runners import RUNNERS
    from lavis.tasks import TASKS

    for reg in (lavis.models.MODELS, lavis.datasets.BUILDERS, TASKS, RUNNERS, LR_SCHEDULERS,
                lavis.processors.PROCESSORS, lavis.models.VISION_ENCODERS):
        for name in reg.names():
            assert isinstance(reg.get(name), type)
    assert {"runner_epoch", "runner_iter"} <= set(RUNNERS.names())
    assert {"linear_warmup_cosine", "linear_warmup_step", "constant"} <= set(LR_SCHEDULERS.names())
