"""Repository-wide pytest set-up: the plugins' tests use vlora's conformance kit (an opt-in pytest plugin)."""

pytest_plugins = ["vlora_core.testing"]
