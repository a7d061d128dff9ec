"""The experiment config: groups of options, each a small dataclass declared where it is read (data,
model, objective and training here; every regularizer its own, ``Regularizer.Options``), joined into
one flat ``Config``. YAML files hold only what differs, and the CLI options and
docs/configuration.md are generated from the same fields (so ``--help`` and YAML agree)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, make_dataclass
from pathlib import Path
from typing import Any

import yaml

from .data import DATASETS
from .files import atomic_write
from .heads import HEADS
from .losses import LOSSES
from .backbones import LOCAL_BACKBONES
from .models import LATENTS
from .options import check_option, entries, option, option_choices, option_help
from .registry import HerdError
from .regularizers import REGULARIZERS, PenaltyOptions, reg_names, regularizer_class

# values that are gone: a saved config naming one is one clear error saying why
RETIRED = {
    "universal_form": "the other universal forms lowered MIG or blanked the decoder "
    "(docs/what-did-not-work.md); delete the line to train the balanced form"
}
RECON_LOSSES = tuple(name for name in LOSSES.names(sort=False) if LOSSES.get(name).reconstruction)


def _reg_help() -> str:
    def weight(name: str) -> str:
        w = REGULARIZERS.get(name).default_weight
        return f" (weight {w:g})" if w else ""

    return (
        "Regularizer: "
        + "; ".join(
            f"{name}: {REGULARIZERS.get(name).help}{weight(name)}" for name in REGULARIZERS.names()
        )
        + ". Several at once as a list, each with its own weight: beta-tcvae,universal or "
        "beta-tcvae:6,universal:5 (at most one of each family: VAE, HeRD, decoder penalty)."
    )


@dataclass
class DataOptions:
    dataset: str = option(
        "digits",
        "Data set (mnist, fashion-mnist and cifar10 via torchvision; imagefolder: a folder of "
        "class folders; templates: generated, many classes, no download).",
        DATASETS,
    )
    num_classes: int | None = option(
        None,
        "Expected number of classes, checked against the data set; for templates, how many classes "
        "to generate (default 100).",
        bound="positive",
    )
    data_root: str = option(
        "data", "Folder holding torchvision data sets, or the image folder itself."
    )
    download: bool = option(
        False, "Download mnist/fashion-mnist/cifar10 into --data-root if missing."
    )
    image_size: int | None = option(
        None, "Side of the square input images (default 32; 64 for imagefolder).", bound="positive"
    )
    num_samples: int | None = option(
        None,
        "Use at most this many training images (shapes: how many to generate; dsprites: how many "
        "to draw, default 20000; templates: how many to generate, default 60 per class).",
        bound="positive",
    )
    batch_size: int = option(
        64,
        "Training batch size of each process (under torchrun the global batch is this times the "
        "number of processes).",
        bound="positive",
    )
    num_workers: int = option(0, "DataLoader worker processes.", bound="non-negative")


@dataclass
class ModelOptions:
    backbone: str = option(
        "resnet18",
        "Any timm model name (resnet18, convnext_atto, vit_tiny_patch16_224, ...) or a timm-free "
        "encoder: " + entries(LOCAL_BACKBONES) + ".",
    )
    pretrained: bool = option(False, "Start from timm's pretrained weights (needs network).")
    pretrained_file: str | None = option(
        None, "Start from local weights (.pth or .safetensors); no network."
    )
    latent: str = option("bottleneck", "Where z lives: {choices}.", LATENTS)
    dims_per_class: int = option(
        2, "Latent dims in each class block (bottleneck latent).", bound="positive"
    )
    shared_dims: int | None = option(
        None,
        "Latent dims shared by all classes, at the end of z (default 0, so every dim belongs to "
        "one class; for pre-logits, whatever is left over).",
        bound="non-negative",
    )
    latent_dim: int | None = option(
        None, "Size of z; default classes x dims-per-class + shared dims.", bound="positive"
    )
    head: str = option("block", "Classifier head on z: {choices}.", HEADS)
    head_hidden: int = option(64, "Hidden width of the mlp head.", bound="positive")
    decoder: bool = option(
        False, "Add a decoder z -> image (needed for --wrt autoencoder/both and image sweeps)."
    )


@dataclass
class ObjectiveOptions:
    reg: str = option("class", _reg_help())
    alpha_cl: float = option(1.0, "Weight of the classification loss.", bound="non-negative")
    alpha_ae: float = option(
        1.0, "Weight of the reconstruction loss (with a decoder).", bound="non-negative"
    )
    recon_loss: str = option("mse", "Reconstruction loss.", RECON_LOSSES)


@dataclass
class TrainingOptions:
    epochs: int = option(12, "Training epochs.", bound="positive")
    steps: int | None = option(
        None,
        "Training budget in optimiser steps, instead of --epochs: the run trains ceil(steps / "
        "batches per epoch) epochs and stops at the budget.",
        bound="positive",
    )
    lr: float = option(2e-3, "AdamW learning rate (cosine schedule).", bound="positive")
    weight_decay: float = option(1e-4, "AdamW weight decay.", bound="non-negative")
    seed: int = option(0, "Random seed; CPU runs with the same seed are identical.")
    device: str = option("auto", "Device: auto (CUDA when present), cpu, cuda or cuda:N.")
    amp: bool = option(
        True, "Mixed precision on CUDA (the curvature and KL terms stay in float32)."
    )
    channels_last: bool = option(
        False,
        "Keep images and conv weights in channels-last memory format (faster conv kernels on some "
        "CPUs and GPUs; docs/performance.md).",
    )
    lr_schedule: str = option(
        "cosine",
        "Learning-rate schedule over the epochs: cosine annealing to 0, or constant.",
        ("cosine", "constant"),
    )
    amp_dtype: str = option(
        "bfloat16",
        "Autocast dtype of --amp; float16 adds a gradient scaler.",
        ("bfloat16", "float16"),
    )
    out_dir: str = option(
        "runs", "Folder of run folders; <out-dir>/latest points at the newest complete run."
    )
    name: str | None = option(None, "Run folder name (default: dataset-backbone-reg-time).")


def option_groups() -> list[tuple[str, type]]:
    """The option groups in the order of the CLI and the docs: (title, dataclass); the options every
    regularizer reads, then each regularizer's own (one group for a family that shares them, e.g.
    class and universal)."""
    own: dict[type, list[str]] = {}
    for name in REGULARIZERS.names(sort=False):
        group = REGULARIZERS.get(name).Options
        if group is not None:
            own.setdefault(group, []).append(name)
    return [
        ("data", DataOptions),
        ("model", ModelOptions),
        ("objective", ObjectiveOptions),
        ("every regularizer", PenaltyOptions),
        *((f"--reg {' and '.join(names)}", group) for group, names in own.items()),
        ("training", TrainingOptions),
    ]


class _ConfigMethods:
    def validate(self) -> "Config":
        for f in fields(self):
            check_option(f, getattr(self, f.name), option_name(f.name))
        regularizer_class(self.reg).check(self)
        return self

    @property
    def penalty_sample_count(self) -> int | None:
        """``penalty_samples``, or the first default of the regularizers ``reg`` names (None: the
        whole batch)."""
        if self.penalty_samples is not None:
            return self.penalty_samples
        defaults = [
            regularizer_class(name).default_penalty_samples(self) for name in reg_names(self.reg)
        ]
        return next((n for n in defaults if n is not None), None)

    @property
    def reg_weight(self) -> float:
        """``alpha_reg``, or the default weight of ``reg`` (None for a list, whose weights ``reg``
        holds)."""
        if len(reg_names(self.reg)) > 1 or ":" in self.reg:
            return None
        return (
            self.alpha_reg
            if self.alpha_reg is not None
            else regularizer_class(self.reg).default_weight
        )


Config = make_dataclass(
    "Config",
    [
        (f.name, f.type, field(default=f.default, metadata=f.metadata))
        for _, group in option_groups()
        for f in fields(group)
    ],
    bases=(_ConfigMethods,),
    namespace={
        "__module__": __name__,
        "__doc__": "Every option of a run, flat: the fields of every option group.",
    },
)


def choices(key: str) -> tuple[str, ...] | None:
    """The valid values of option ``key`` (None: any of its type)."""
    return option_choices(Config.__dataclass_fields__[key])


def option_name(key: str) -> str:
    return "--" + key.replace("_", "-")


def config_keys() -> list[str]:
    return [f.name for f in fields(Config)]


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML config file as a dict of known keys; every problem is one clear HerdError."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as err:
        raise HerdError(f"cannot read config {path}: {err.strerror}; check the path") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise HerdError(f"config {path} is not valid YAML{where}; fix the file") from None
    data = data or {}
    if not isinstance(data, dict):
        raise HerdError(f"config {path} must be a mapping of option: value")
    for key, why in RETIRED.items():
        if key in data and data[key] not in choices(key):
            raise HerdError(f"config {path} sets {key}, which is retired: {why}")
    unknown = sorted(set(data) - set(config_keys()))
    if unknown:
        raise HerdError(
            f"config {path} has unknown keys {', '.join(unknown)}; valid keys: "
            f"{', '.join(config_keys())}"
        )
    return data


def _coerce(key: str, value: Any) -> Any:
    """Type-check a YAML value against the field's default (YAML gives ints for floats, etc.)."""
    kind = Config.__dataclass_fields__[key].type
    if value is None:
        return None
    if "bool" in kind and not isinstance(value, bool):
        raise HerdError(f"config key {key} must be true or false, got {value!r}")
    if "float" in kind and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if "int" in kind and not (isinstance(value, int) and not isinstance(value, bool)):
        raise HerdError(f"config key {key} must be an integer, got {value!r}")
    if "str" in kind and not isinstance(value, str):
        raise HerdError(f"config key {key} must be a string, got {value!r}")
    return value


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Defaults < YAML file < overrides (None values in overrides are ignored)."""
    values = read_yaml(path) if path else {}
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return Config(**{k: _coerce(k, v) for k, v in values.items()}).validate()


def save_config(cfg: Config, path: Path) -> None:
    atomic_write(path, yaml.safe_dump(asdict(cfg), sort_keys=False))


def reference_markdown() -> str:
    """docs/configuration.md: every option with its YAML key, default, choices and meaning, by
    group."""
    sections = []
    for title, group in option_groups():
        rows = []
        for f in fields(group):
            valid = ", ".join(f"`{c}`" for c in choices(f.name) or ())
            default = "–" if f.default is None else f"`{f.default}`"
            rows.append(
                f"| `{option_name(f.name)}` | `{f.name}` | {default} | {valid} | {option_help(f)} |"
            )
        sections.append(
            f"## {title[0].upper() + title[1:]}\n\n| option | YAML key | default | choices | "
            "meaning |\n|---|---|---|---|---|\n" + "\n".join(rows)
        )
    return (
        "# Configuration reference\n\nGenerated from the option groups of `herd_cls.config` (each "
        "regularizer declares its own) by `python scripts/config_reference.py` (a test checks it "
        "is current). Every option can be given on the command line of `herd-cls train` or as a "
        "key of a YAML file passed with `--config`; the command line wins, and the resolved config "
        "is saved as `config.yaml` in the run folder. The files in `configs/` hold only what "
        "differs from these defaults.\n\n" + "\n\n".join(sections) + "\n"
    )
