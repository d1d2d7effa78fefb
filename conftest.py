"""Repository-wide pytest set-up: the plugins' tests use vlora's conformance kit (an opt-in pytest plugin)."""

pytest_plugins = ["vlora_core.testing"]


def pytest_configure(config):
    """The module-tree cache stays off in tests (a test that patches transformers must see its patch, not a
    tree cached before it); tests/integration/test_cache.py turns it on in a folder of its own."""
    import os
    import tempfile

    os.environ["VLORA_NO_CACHE"] = "1"
    # and a test that turns it on (or runs `vlora cache clear`) never touches the user's own cache folder
    os.environ["VLORA_CACHE_DIR"] = tempfile.mkdtemp(prefix="vlora-test-cache-")
