"""quick_init: the same objects as the dataclass's own __init__, made faster, and only where it can."""

from __future__ import annotations

import dataclasses
import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.base import Applied, StoredObject
from provisioner.core.directory import PersonRow
from provisioner.core.model import DesiredPerson, TargetObject
from provisioner.core.plan import Change, Op
from provisioner.core.quickinit import quick_init
from provisioner.core.rows import IndexRow

CLASSES = [Change, TargetObject, DesiredPerson, IndexRow, PersonRow, Applied, StoredObject]
values = st.one_of(
    st.none(), st.text(max_size=5), st.integers(), st.dictionaries(st.text(max_size=3), st.text())
)


def _expected(cls: type, given_values: dict[str, object]) -> dict[str, object]:
    """Each field's value as dataclasses defines it: the one given, else the default or the factory's."""
    out = {}
    for f in dataclasses.fields(cls):
        if f.name in given_values:
            out[f.name] = given_values[f.name]
        elif f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        else:
            out[f.name] = f.default_factory()  # type: ignore[misc]
    return out


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_the_hot_classes_are_given_it(cls: type) -> None:
    assert cls.__init__.__qualname__ == f"{cls.__qualname__}.__init__"
    assert cls.__init__.__code__.co_filename == "<string>"
    assert "_set_" in " ".join(cls.__init__.__code__.co_names)  # the descriptors, not object.__setattr__


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
@given(data=st.data())
def test_fields_are_set_as_the_dataclass_sets_them(cls: type, data: st.DataObject) -> None:
    fields = dataclasses.fields(cls)
    missing = dataclasses.MISSING
    required = [f.name for f in fields if f.default is missing and f.default_factory is missing]
    optional = [f.name for f in fields if f.name not in required]
    chosen = data.draw(st.lists(st.sampled_from(optional), unique=True)) if optional else []
    given_values = {name: data.draw(values) for name in required + chosen}
    positional = data.draw(st.integers(0, len(required)))
    names = [f.name for f in fields]
    args = [given_values[n] for n in names[:positional]]
    kwargs = {n: v for n, v in given_values.items() if n not in names[:positional]}
    obj = cls(*args, **kwargs)
    assert {f.name: getattr(obj, f.name) for f in fields} == _expected(cls, given_values)
    assert dataclasses.replace(obj) == obj
    assert pickle.loads(pickle.dumps(obj)) == obj
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(obj, names[0], "changed")


def test_defaults_are_the_shared_values_not_copies() -> None:
    a = Change("t", Op.CREATE, "person", "P1", "why")
    b = Change("t", Op.DELETE, "person", "P2", "why")
    assert a.attrs is b.attrs and a.before is b.place  # one empty mapping for all (plan.py)
    assert Applied().extra is not Applied().extra  # a factory of dict: a new one each time


def test_wrong_arguments_fail_as_before() -> None:
    with pytest.raises(TypeError, match="missing 4 required positional arguments"):
        Change("t")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="unexpected keyword argument 'bogus'"):
        Change("t", Op.CREATE, "person", "P1", "why", bogus=1)  # type: ignore[call-arg]


def _refused(cls: type) -> str:
    with pytest.raises(TypeError) as info:
        quick_init(cls)
    return str(info.value)


def test_what_it_cannot_make_alike_is_refused() -> None:
    @dataclasses.dataclass(slots=True)
    class NotFrozen:
        a: int

    @dataclasses.dataclass(frozen=True)
    class NoSlots:
        a: int

    @dataclasses.dataclass(frozen=True, slots=True)
    class PostInit:
        a: int

        def __post_init__(self) -> None:
            pass

    @dataclasses.dataclass(frozen=True, slots=True)
    class KwOnly:
        a: int = dataclasses.field(kw_only=True)

    @dataclasses.dataclass(frozen=True, slots=True)
    class NotInit:
        a: int = dataclasses.field(init=False, default=1)

    @dataclasses.dataclass(frozen=True, slots=True)
    class WithInitVar:
        a: int
        b: dataclasses.InitVar[int] = 0

    class Plain:
        pass

    assert "not a frozen dataclass with slots" in _refused(NotFrozen)
    assert "not a frozen dataclass with slots" in _refused(NoSlots)
    assert "not a frozen dataclass with slots" in _refused(Plain)
    assert "__post_init__" in _refused(PostInit)
    assert "not a plain init field" in _refused(KwOnly)
    assert "not a plain init field" in _refused(NotInit)
    assert "InitVar or ClassVar" in _refused(WithInitVar)
