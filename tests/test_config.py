import pytest

from herd_cls.config import Config, load_config
from herd_cls.registry import HerdError


def test_defaults_then_yaml_then_overrides(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("epochs: 3\nlr: 1\nreg: universal\n")
    cfg = load_config(path, {"epochs": 5, "seed": None})
    assert (cfg.epochs, cfg.lr, cfg.reg, cfg.seed) == (5, 1.0, "universal", Config().seed)
    assert isinstance(cfg.lr, float)


@pytest.mark.parametrize(
    "text,message",
    [
        ("epochs: [3\n", "not valid YAML at line"),
        ("epoch: 3\n", "unknown keys epoch"),
        ("epochs: three\n", "epochs must be an integer"),
        ("- 1\n- 2\n", "must be a mapping"),
        (
            "reg: classy\n",
            "unknown regularizer .classy.; choose one of: beta-tcvae, beta-vae, .*, universal$",
        ),
        ("batch_size: 0\n", "--batch-size must be positive"),
        ("wrt: autoencoder\n", "needs a decoder; add --decoder"),
    ],
)
def test_invalid_config_files_name_the_problem(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(HerdError, match=message):
        load_config(path)


def test_missing_config_file(tmp_path):
    with pytest.raises(HerdError, match="cannot read config"):
        load_config(tmp_path / "nope.yaml")


def test_shipped_configs_are_valid():
    from pathlib import Path

    files = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))
    assert files
    for path in files:
        load_config(path)


def test_library_defaults_equal_the_shipped_cli_defaults():
    import inspect

    from herd_cls.models import create_model
    from herd_cls.regularizers.herd import HeRD

    cfg = Config()
    params = inspect.signature(create_model).parameters
    for key in ("latent", "head", "head_hidden", "decoder", "pretrained"):
        assert params[key].default == getattr(cfg, key), key
    model = create_model("conv", num_classes=10, in_chans=1, image_size=16)
    assert model.latent_dim == 10 * cfg.dims_per_class  # shared dims default to none, as on the CLI
    herd = inspect.signature(HeRD).parameters
    assert herd["variant"].default == cfg.variant
    assert (
        herd["alpha_off"].default == cfg.alpha_off and herd["alpha_diag"].default == cfg.alpha_diag
    )


def test_configuration_reference_is_current():
    from pathlib import Path

    from herd_cls.config import reference_markdown

    path = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"
    assert path.read_text() == reference_markdown(), (
        "regenerate it: python scripts/config_reference.py"
    )
