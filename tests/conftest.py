"""Test set-up: 8 host CPU devices (set before JAX is imported) and the shared corpora."""

import os

os.environ.setdefault("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in os.environ["XLA_FLAGS"]:
    os.environ["XLA_FLAGS"] += " --xla_force_host_platform_device_count=8"
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pytest  # noqa: E402

from tests.helpers import shared_dir  # noqa: E402


@pytest.fixture(scope="session")
def shared():
    """Path of ``../shared`` (tests that need real data skip when it is absent)."""
    path = shared_dir()
    if path is None:
        pytest.skip("../shared is not available")
    return path


@pytest.fixture(scope="session", autouse=True)
def _plugins_loaded():
    from framework.core import discovery

    discovery.load_plugins()


@pytest.fixture(autouse=True)
def _fresh_gin_bindings():
    """Each test starts and ends with no gin bindings: a test that parses a config must not
    decide the defaults of classes (``sharding.MeshConfig``, models) built by later tests."""
    import gin

    gin.clear_config()
    yield
    gin.clear_config()


@pytest.fixture(scope="session")
def byte_ranks(tmp_path_factory):
    """A tiktoken rank file with the 256 single bytes (a 257-id tokenizer with <|endoftext|>)."""
    import base64

    path = tmp_path_factory.mktemp("tok") / "bytes.tiktoken"
    path.write_text("".join(f"{base64.b64encode(bytes([i])).decode()} {i}\n" for i in range(256)))
    return path
