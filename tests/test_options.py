"""Option fields: their checks, and the config joined from the groups that declare them (each
regularizer its own)."""

from dataclasses import dataclass, fields

import pytest

from herd_cls.options import check_option, option, option_help, options_from
from herd_cls.registry import HerdError, Registry


@dataclass
class _Toy:
    width: int = option(4, "A width.", bound="positive")
    decay: float | None = option(None, "A decay.", bound="non-negative")
    kind: str = option("a", "A kind.", ("a", "b"))


def _field(name):
    return next(f for f in fields(_Toy) if f.name == name)


@pytest.mark.parametrize(
    "name,value,message",
    [
        ("width", 0, "--width must be positive, got 0"),
        ("width", None, "--width needs a value, got none"),
        ("decay", -0.5, "--decay must not be negative, got -0.5"),
        ("kind", "c", "--kind must be one of a, b, got 'c'"),
    ],
)
def test_bad_values_are_one_clear_error(name, value, message):
    with pytest.raises(HerdError, match=f"^{message}$"):
        check_option(_field(name), value, f"--{name}")


def test_good_values_pass_and_a_registry_is_read_when_asked():
    check_option(_field("width"), 1, "--width")
    check_option(_field("decay"), None, "--decay")
    kinds = Registry("kind")
    kinds.register("x")(object())
    entry = option("x", "From a registry.", kinds)
    with pytest.raises(HerdError, match="must be one of x, got 'y'"):
        check_option(entry, "y", "--kind")
    kinds.register("y")(object())
    check_option(entry, "y", "--kind")


def test_a_registrys_entries_are_listed_in_the_help_as_registered_when_read():
    kinds = Registry("kind")
    kinds.add(type("Entry", (), {"name": "x", "help": "the first"}))
    entry = option("x", "A kind: {choices}.", kinds)
    assert option_help(entry) == "A kind: 'x': the first."
    kinds.add(type("Entry", (), {"name": "y", "help": "a later one"}))
    assert option_help(entry) == "A kind: 'x': the first; 'y': a later one."
    assert option_help(_field("width")) == "A width."


def test_options_from_reads_the_groups_fields():
    class Source:
        width, decay, kind, other = 9, 0.1, "b", "ignored"

    assert options_from(_Toy, Source()) == _Toy(9, 0.1, "b")


def test_the_config_joins_every_group_once_and_regularizers_read_their_own():
    from herd_cls.config import Config, load_config, option_groups
    from herd_cls.regularizers import REGULARIZERS
    from herd_cls.regularizers.herd_objects import HeRDOptions

    groups = dict(option_groups())
    assert groups["--reg class and universal"] is HeRDOptions
    assert groups["--reg beta-vae-capacity"] is REGULARIZERS.get("beta-vae-capacity").Options
    names = [f.name for group in groups.values() for f in fields(group)]
    assert names == [f.name for f in fields(Config)] and len(set(names)) == len(names)
    cfg = load_config(overrides={"reg": "class", "variant": "purity", "probes": 3})
    assert options_from(HeRDOptions, cfg) == HeRDOptions(variant="purity", probes=3)
