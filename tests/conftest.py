import pytest

# a model and data small enough to train end-to-end in seconds on a CPU
TINY = ["--dataset", "digits", "--num-samples", "300", "--image-size", "16", "--backbone", "conv",
        "--epochs", "2", "--batch-size", "32", "--quiet"]


@pytest.fixture
def tiny_args(tmp_path):
    return TINY + ["--out-dir", str(tmp_path / "runs")]
