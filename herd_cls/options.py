"""User options as dataclass fields: each carries its default, its ``--help`` text and its valid
values.

Every group of options is a small dataclass declared where it is read (a regularizer declares its
own, see :class:`herd_cls.regularizers.Regularizer`); :mod:`herd_cls.config` joins the groups into
one ``Config``, from which the CLI, the YAML files and docs/configuration.md are made.

>>> @dataclass
... class CapacityOptions:
...     capacity: float = option(25.0, "KL capacity in nats.")
"""

from __future__ import annotations

from dataclasses import Field, field, fields
from typing import Any, TypeVar

from .registry import HerdError, Registry

T = TypeVar("T")


def option(
    default: Any, help: str, choices: tuple | Registry | None = None, bound: str | None = None
) -> Any:
    """A field of a user option. ``choices``: a tuple, or a registry whose names are read when asked
    (so an entry registered after import is a valid choice); ``{choices}`` in ``help`` stands for
    the registry's entries with their own help, as registered when the help is built
    (:func:`option_help`: the CLI at import, docs/configuration.md when generated). ``bound``:
    "positive" or "non-negative" (None passes)."""
    return field(default=default, metadata={"help": help, "choices": choices, "bound": bound})


def check_option(f: Field, value: Any, name: str) -> None:
    """Raise a HerdError naming option ``name`` when ``value`` is not one of its choices or out of
    its bound."""
    if value is None and f.default is not None:
        raise HerdError(f"{name} needs a value, got none")
    valid = option_choices(f)
    if valid and value not in valid:
        raise HerdError(f"{name} must be one of {', '.join(valid)}, got {value!r}")
    bound = f.metadata["bound"]
    if value is not None and bound == "positive" and not value > 0:
        raise HerdError(f"{name} must be positive, got {value!r}")
    if value is not None and bound == "non-negative" and value < 0:
        raise HerdError(f"{name} must not be negative, got {value!r}")


def option_choices(f: Field) -> tuple[str, ...] | None:
    """The valid values of the option field ``f`` (None: any of its type)."""
    valid = f.metadata["choices"]
    return tuple(valid.names(sort=False)) if isinstance(valid, Registry) else valid


def option_help(f: Field) -> str:
    """The help of option field ``f``, with ``{choices}`` replaced by its registry's entries as
    registered now."""
    text = f.metadata["help"]
    return (
        text.replace("{choices}", entries(f.metadata["choices"])) if "{choices}" in text else text
    )


def entries(registry: Registry) -> str:
    """ "'name': help; ..." for every entry of ``registry``, in registration order (for an option's
    help)."""
    return "; ".join(f"'{name}': {registry.get(name).help}" for name in registry.names(sort=False))


def options_from(group: type[T], source: Any) -> T:
    """The ``group`` dataclass filled from the same-named attributes of ``source`` (e.g. a
    Config)."""
    return group(**{f.name: getattr(source, f.name) for f in fields(group)})
