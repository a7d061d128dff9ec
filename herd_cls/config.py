"""The experiment config: one flat dataclass whose defaults live here, YAML files that hold only
what differs, and CLI options generated from the same fields (so ``--help`` and YAML agree)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from .data import DATASETS
from .files import atomic_write
from .heads import HEADS
from .models import LATENTS, LOCAL_BACKBONES
from .purity import WRT
from .curvature import CURVATURE_METHODS
from .decoder_curvature import LAYERS as DECODER_LAYERS
from .losses import LOSSES
from .registry import HerdError, Registry
from .regularizers import REGULARIZERS, reg_names, regularizer_class
from .regularizers.herd_forms import CLASS_VARIANTS, UNIVERSAL_FORMS

REGS = tuple(REGULARIZERS.names())
# values that are gone: a saved config naming one is one clear error saying why
RETIRED = {"universal_form": "the other universal forms lowered MIG or blanked the decoder "
                             "(docs/what-did-not-work.md); delete the line to train the balanced form"}
RECON_LOSSES = tuple(name for name in LOSSES.names(sort=False) if LOSSES.get(name).reconstruction)
# HeRD with the decoder's Hessian on 16 images of a batch: under 2x a plain step on the conv autoencoder,
# with purity unchanged (docs/performance.md); the shapes configs set 32
DECODER_PENALTY_SAMPLES = 16


def _opt(default, help: str, choices: tuple | Registry | None = None):
    """A field with its help and choices: a tuple, or a registry whose names are read when asked (so an entry
    registered after import is a valid choice)."""
    return field(default=default, metadata={"help": help, "choices": choices})


def choices(key: str) -> tuple[str, ...] | None:
    """The valid values of option ``key`` (None: any of its type)."""
    options = Config.__dataclass_fields__[key].metadata["choices"]
    return tuple(options.names(sort=False)) if isinstance(options, Registry) else options


def _entries(registry: Registry) -> str:
    """"'name': help; ..." for every entry of ``registry``, in registration order."""
    return "; ".join(f"'{name}': {registry.get(name).help}" for name in registry.names(sort=False))


@dataclass
class Config:
    # data
    dataset: str = _opt("digits", "Data set (mnist, fashion-mnist and cifar10 via torchvision; imagefolder: "
                                  "a folder of class folders; templates: generated, many classes, no download).",
                        tuple(DATASETS.names()))
    num_classes: int | None = _opt(None, "Expected number of classes, checked against the data set; for templates, "
                                         "how many classes to generate (default 100).")
    data_root: str = _opt("data", "Folder holding torchvision data sets, or the image folder itself.")
    download: bool = _opt(False, "Download mnist/fashion-mnist/cifar10 into --data-root if missing.")
    image_size: int | None = _opt(None, "Side of the square input images (default 32; 64 for imagefolder).")
    num_samples: int | None = _opt(None, "Use at most this many training images (shapes: how many to generate; "
                                                  "dsprites: how many to draw, default 20000; templates: how many "
                                                  "to generate, default 60 per class).")
    batch_size: int = _opt(64, "Training batch size of each process (under torchrun the global batch is this "
                                "times the number of processes).")
    num_workers: int = _opt(0, "DataLoader worker processes.")
    # model
    backbone: str = _opt("resnet18", "Any timm model name (resnet18, convnext_atto, vit_tiny_patch16_224, ...) "
                                     "or a timm-free encoder: " + _entries(LOCAL_BACKBONES) + ".")
    pretrained: bool = _opt(False, "Start from timm's pretrained weights (needs network).")
    pretrained_file: str | None = _opt(None, "Start from local weights (.pth or .safetensors); no network.")
    latent: str = _opt("bottleneck", "Where z lives: " + _entries(LATENTS) + ".", LATENTS)
    dims_per_class: int = _opt(2, "Latent dims in each class block (bottleneck latent).")
    shared_dims: int | None = _opt(None, "Latent dims shared by all classes, at the end of z (default 0, so every "
                                         "dim belongs to one class; for pre-logits, whatever is left over).")
    latent_dim: int | None = _opt(None, "Size of z; default classes x dims-per-class + shared dims.")
    head: str = _opt("block", "Classifier head on z: " + "; ".join(f"'{name}': {HEADS.get(name).help}"
                                                                for name in HEADS.names(sort=False)) + ".",
                     tuple(HEADS.names(sort=False)))
    head_hidden: int = _opt(64, "Hidden width of the mlp head.")
    decoder: bool = _opt(False, "Add a decoder z -> image (needed for --wrt autoencoder/both and image sweeps).")
    # regularizer
    reg: str = _opt("class", "Regularizer: " + "; ".join(f"{name}: {REGULARIZERS.get(name).help}" for name in REGS)
                    + ". Several at once as a list, each with its own weight: beta-tcvae,universal or "
                      "beta-tcvae:6,universal:5 (at most one of each family: VAE, HeRD, decoder penalty).")
    variant: str = _opt("image-purity", "Class-specific formulation: " + _entries(CLASS_VARIANTS) + ".",
                        CLASS_VARIANTS)
    universal_form: str = _opt("balanced", "Universal HeRD's form on a loss's Hessian (--wrt classifier; "
                                           "decoder-output penalises the decoder's own off-diagonal share): "
                                           + _entries(UNIVERSAL_FORMS) + ". The other forms measured are retired "
                                           "(docs/what-did-not-work.md).", UNIVERSAL_FORMS)
    wrt: str = _opt("classifier", "Whose curvature HeRD shapes: the latent Hessian of the classifier's loss, of the "
                                  "decoder's reconstruction loss (autoencoder), of their sum (both), or the decoder's "
                                  "own curvature (decoder-output: the Hessians of its activations, in units of each "
                                  "latent dim's batch std; docs/method.md).", WRT)
    decoder_layers: str = _opt("output", "With --wrt decoder-output, whose curvature: the decoded image (output), "
                                         "the decoder's hidden activations (hidden) or both (all).", DECODER_LAYERS)
    alpha_reg: float | None = _opt(None, "Weight of the regularizer (beta for beta-vae and beta-tcvae, gamma for "
                                         "factor-vae and beta-vae-capacity); default per --reg: "
                                         + ", ".join(f"{name} {REGULARIZERS.get(name).default_weight:g}"
                                                     for name in REGS if REGULARIZERS.get(name).default_weight)
                                         + ". HeRD on a decoder's Hessian (--wrt autoencoder or both) is weighted "
                                           "per image: the trainer divides it by the pixel count.")
    capacity: float = _opt(25.0, "KL capacity in nats that beta-vae-capacity anneals to, linearly over the epochs.")
    alpha_off: float = _opt(0.5, "Weight of off-diagonal Hessian mass in the mask.")
    alpha_diag: float = _opt(1.0, "Weight of out-of-block diagonal Hessian mass in the mask.")
    alpha_cl: float = _opt(1.0, "Weight of the classification loss.")
    alpha_ae: float = _opt(1.0, "Weight of the reconstruction loss (with a decoder).")
    recon_loss: str = _opt("mse", "Reconstruction loss.", RECON_LOSSES)
    warmup: int = _opt(1, "Epochs trained without the penalty before it switches on.")
    ramp: int = _opt(2, "Epochs over which the penalty then ramps linearly to full weight (0: at once).")
    penalty_samples: int | None = _opt(None, "Compute a curvature or Jacobian regularizer (class, universal, "
                                             "hessian-penalty, orojar) on the first N samples of each batch "
                                             f"(default: all; {DECODER_PENALTY_SAMPLES} for HeRD with --wrt "
                                             "autoencoder or both); its cost grows with N.")
    probes: int | None = _opt(None, "Probe count of a probe --hessian-method (forward 1, hvp 2); with 'auto' on the "
                                    "classifier's loss it selects HVP probes (purity variants only).")
    hessian_method: str = _opt("auto", "How curvature is computed: " + _entries(CURVATURE_METHODS) + ".",
                               CURVATURE_METHODS)
    # training
    epochs: int = _opt(12, "Training epochs.")
    steps: int | None = _opt(None, "Training budget in optimiser steps, instead of --epochs: the run trains "
                                   "ceil(steps / batches per epoch) epochs and stops at the budget.")
    lr: float = _opt(2e-3, "AdamW learning rate (cosine schedule).")
    weight_decay: float = _opt(1e-4, "AdamW weight decay.")
    seed: int = _opt(0, "Random seed; CPU runs with the same seed are identical.")
    device: str = _opt("auto", "Device: auto (CUDA when present), cpu, cuda or cuda:N.")
    amp: bool = _opt(True, "Mixed precision on CUDA (the curvature and KL terms stay in float32).")
    channels_last: bool = _opt(False, "Keep images and conv weights in channels-last memory format (faster conv "
                                      "kernels on some CPUs and GPUs; docs/performance.md).")
    lr_schedule: str = _opt("cosine", "Learning-rate schedule over the epochs: cosine annealing to 0, or constant.",
                            ("cosine", "constant"))
    amp_dtype: str = _opt("bfloat16", "Autocast dtype of --amp; float16 adds a gradient scaler.", ("bfloat16", "float16"))
    out_dir: str = _opt("runs", "Folder of run folders; <out-dir>/latest points at the newest complete run.")
    name: str | None = _opt(None, "Run folder name (default: dataset-backbone-reg-time).")

    def validate(self) -> "Config":
        for f in fields(self):
            value, valid = getattr(self, f.name), choices(f.name)
            if valid and value not in valid:
                raise HerdError(f"{option_name(f.name)} must be one of {', '.join(valid)}, got {value!r}")
        positive = ["batch_size", "epochs", "dims_per_class", "head_hidden", "lr"]
        for key in positive + ["image_size", "latent_dim", "num_samples", "probes", "num_classes", "steps", "penalty_samples"]:
            value = getattr(self, key)
            if (value is not None or key in positive) and not value > 0:
                raise HerdError(f"{option_name(key)} must be positive, got {value!r}")
        for key in ["num_workers", "warmup", "ramp", "shared_dims", "alpha_reg", "alpha_off", "alpha_diag",
                    "alpha_cl", "alpha_ae", "weight_decay", "capacity"]:
            value = getattr(self, key)
            if value is not None and value < 0:
                raise HerdError(f"{option_name(key)} must not be negative, got {value!r}")
        regularizer_class(self.reg).check(self)
        return self

    @property
    def penalty_sample_count(self) -> int | None:
        """``penalty_samples``, or DECODER_PENALTY_SAMPLES where HeRD's Hessian includes the decoder's."""
        herd = {"class", "universal"} & set(reg_names(self.reg))
        if self.penalty_samples is None and herd and self.wrt != "classifier":
            return DECODER_PENALTY_SAMPLES
        return self.penalty_samples

    @property
    def reg_weight(self) -> float:
        """``alpha_reg``, or the default weight of ``reg`` (None for a list, whose weights ``reg`` holds)."""
        if len(reg_names(self.reg)) > 1 or ":" in self.reg:
            return None
        return self.alpha_reg if self.alpha_reg is not None else regularizer_class(self.reg).default_weight


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
        raise HerdError(f"config {path} has unknown keys {', '.join(unknown)}; valid keys: {', '.join(config_keys())}")
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
    """docs/configuration.md: every option with its YAML key, default, choices and meaning."""
    rows = []
    for f in fields(Config):
        valid = ", ".join(f"`{c}`" for c in choices(f.name) or ())
        default = "–" if f.default is None else f"`{f.default}`"
        rows.append(f"| `{option_name(f.name)}` | `{f.name}` | {default} | {valid} | {f.metadata['help']} |")
    return ("# Configuration reference\n\n"
            "Generated from `herd_cls.config.Config` by `python scripts/config_reference.py` (a test "
            "checks it is current). Every option can be given on the command line of `herd-cls train` or as a key "
            "of a YAML file passed with `--config`; the command line wins, and the resolved config is saved as "
            "`config.yaml` in the run folder. The files in `configs/` hold only what differs from these defaults.\n\n"
            "| option | YAML key | default | choices | meaning |\n|---|---|---|---|---|\n" + "\n".join(rows) + "\n")
