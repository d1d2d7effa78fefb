"""Plugin registry: entry-point discovery, broken plugins reported by name, conflicts, disabling."""

from __future__ import annotations

import pytest
from tinyvlm import FakePlugin, TinyVLM, install_plugin, make_registry, tiny_architecture

from vlora_core import (
    Component,
    PluginConflictError,
    Registry,
    UnsupportedModelError,
    hookimpl,
    resolve,
)

GOOD = """
from vlora_core import ArchitectureSpec, Component, hookimpl

@hookimpl
def vlora_architectures():
    return [ArchitectureSpec(name="{arch}", model_types=("{model_type}",), components=(
        Component(name="language", prefix=r"language\\.layers\\.(?P<layer>\\d+)", roles={{"mlp": ("mlp.up",)}}),
    ))]
"""


def _mine(registry: Registry, prefix: str = "vlora-test") -> list[str]:
    return sorted(p.distribution for p in registry.plugins if p.distribution.startswith(prefix))


def test_discovers_entry_points_with_distribution_and_version(tmp_path, monkeypatch):
    install_plugin(tmp_path, monkeypatch, "vlora-test-good", "vt_good", GOOD.format(arch="g", model_type="mt_g"))
    registry = Registry.discover(disabled=[])
    (info,) = [p for p in registry.plugins if p.distribution == "vlora-test-good"]
    assert (info.name, info.version) == ("vt_good", "1.2.3")
    assert registry.lookup("mt_g")[1].name == "g"


def test_broken_plugins_are_reported_by_name_and_others_keep_working(tmp_path, monkeypatch):
    install_plugin(tmp_path, monkeypatch, "vlora-test-good", "vt_good", GOOD.format(arch="g", model_type="mt_g"))
    install_plugin(tmp_path, monkeypatch, "vlora-test-import", "vt_import", "raise RuntimeError('boom at import')\n")
    install_plugin(tmp_path, monkeypatch, "vlora-test-hook", "vt_hook", """
        from vlora_core import hookimpl
        @hookimpl
        def vlora_architectures():
            raise ValueError("boom in hook")
    """)
    install_plugin(tmp_path, monkeypatch, "vlora-test-data", "vt_data", """
        from vlora_core import hookimpl
        @hookimpl
        def vlora_architectures():
            return [{"name": "bad", "model_types": ["x"], "components": [
                {"name": "vision", "prefix": "v\\\\.(?P<layer>\\\\d+)", "roles": {"attentoin": ["q"]}}]}]
    """)
    registry = Registry.discover(disabled=[])
    assert _mine(registry) == ["vlora-test-good"]
    failures = {f.distribution: f.reason for f in registry.failures if f.distribution.startswith("vlora-test")}
    assert "boom at import" in failures["vlora-test-import"]
    assert "boom in hook" in failures["vlora-test-hook"]
    assert "unknown role 'attentoin'" in failures["vlora-test-data"]
    assert registry.lookup("mt_g")[1].name == "g"


def test_disable_by_environment_variable(tmp_path, monkeypatch):
    install_plugin(tmp_path, monkeypatch, "vlora-test-good", "vt_good", GOOD.format(arch="g", model_type="mt_g"))
    monkeypatch.setenv("VLORA_DISABLE_PLUGINS", "vt_good, other")
    registry = Registry.discover()
    assert _mine(registry) == []
    assert "vt_good" in registry.disabled
    with pytest.raises(UnsupportedModelError, match="no installed plugin handles model_type 'mt_g'"):
        registry.lookup("mt_g")


def test_two_plugins_claiming_one_model_type_is_an_error_naming_both(tmp_path, monkeypatch):
    install_plugin(tmp_path, monkeypatch, "vlora-test-one", "vt_one", GOOD.format(arch="one", model_type="shared"))
    install_plugin(tmp_path, monkeypatch, "vlora-test-two", "vt_two", GOOD.format(arch="two", model_type="shared"))
    registry = Registry.discover(disabled=[])
    with pytest.raises(PluginConflictError) as info:
        registry.lookup("shared")
    assert "vlora-test-one" in str(info.value) and "vlora-test-two" in str(info.value)
    # the hint offers to disable either one, not an arbitrary one of them
    assert info.value.hint.endswith("VLORA_DISABLE_PLUGINS=vt_one or VLORA_DISABLE_PLUGINS=vt_two")
    assert set(registry.conflicts()) == {"shared"}


def test_one_plugin_claiming_a_model_type_twice_is_told_to_fix_itself():
    from tinyvlm import tiny_architecture

    class Twice:
        @hookimpl
        def vlora_architectures(self):
            return [tiny_architecture(), tiny_architecture().model_copy(update={"name": "tiny_again"})]

    registry = Registry.from_plugins(Twice(), names=["twice"])
    with pytest.raises(PluginConflictError) as info:
        registry.lookup("tinyvlm")
    assert info.value.hint == "plugin twice declares it in two architectures: fix the plugin"


@pytest.mark.parametrize(
    ("component", "words"),
    [
        (dict(name="vision", prefix=r"vision\.layers\.(?P<layer>\d+", roles={"mlp": ("mlp.up",)}),
         "not a valid regular expression"),
        (dict(name="vision", prefix=r"v\.(?P<layer>\d+)", roles={"mlp": ("mlp.up", "mlp.up")}), "declared twice"),
        (dict(name="vision", prefix=r"v\.(?P<layer>\d+)", roles={"mlp": ("mlp.up",), "attention": ("mlp.up",)}),
         "declared twice"),
        (dict(name="vision", prefix=r"v\.(?P<layer>\d+)", roles={"mlp": ("mlp/up",)}), "dotted leaf path"),
        (dict(name="vision", prefix=r"vision\.layers", roles={"mlp": ("mlp.up",)}), "named group (?P<layer>"),
        (dict(name="video", prefix=r"a\.(?P<layer>\d+)", roles={"mlp": ("mlp.up",)}), "unknown component"),
        # a branch of an alternation, or an optional part, that lacks the layer group would crash resolve
        (dict(name="vision", prefix=r"v\.layers\.(?P<layer>\d+)|visual", roles={"mlp": ("mlp.up",)}),
         "can match without setting the group 'layer'"),
        (dict(name="vision", prefix=r"(?:v\.(?P<layer>\d+)\.)?blocks", roles={"mlp": ("mlp.up",)}),
         "can match without setting the group 'layer'"),
        (dict(name="vision", prefix=r"v\.(?:(?P<stack>a)|b)\.(?P<layer>\d+)", roles={"mlp": ("mlp.up",)}),
         "can match without setting the group 'stack'"),
        # the projector's modules are all 'projection': other roles would put adapters in a fully trained one
        (dict(name="projector", prefix=r"projector", roles={"attention": ("attn.q",)}),
         "role 'attention' is not one a projector component may have"),
        (dict(name="vision", prefix=r"v\.(?P<layer>\d+)", roles={"projection": ("fc",)}),
         "role 'projection' is not one a vision component may have"),
    ],
)
def test_invalid_architecture_data_is_a_plugin_failure(component, words):
    class Bad:
        @hookimpl
        def vlora_architectures(self):
            return [{"name": "bad", "model_types": ["bad"], "components": [component]}]

    registry = Registry.from_plugins(Bad(), FakePlugin(), names=["bad", "fake"])
    assert [f.name for f in registry.failures] == ["bad"]
    assert words in registry.failures[0].reason
    assert [p.name for p in registry.plugins] == ["fake"]


def test_a_misspelt_hook_is_that_plugins_failure_and_an_optional_one_loads():
    arch = tiny_architecture()

    class Typo:
        @hookimpl
        def vlora_architectures(self):
            return [arch]

        @hookimpl
        def vlora_unused_layer(self, architecture, config, layer_counts):  # the s is missing
            return None

    class Newer:
        @hookimpl
        def vlora_architectures(self):
            return [arch.model_copy(update={"name": "newer", "model_types": ("newer",)})]

        @hookimpl(optionalhook=True)
        def vlora_from_a_newer_core(self):
            return None

    registry = Registry.from_plugins(Typo(), Newer(), names=["vlora-typo", "vlora-newer"])
    assert [p.name for p in registry.plugins] == ["vlora-newer"]
    (failure,) = registry.failures
    assert failure.name == "vlora-typo" and failure.reason.startswith("unknown hook vlora_unused_layer (misspelt?")
    assert "vlora_unused_layers" in failure.reason


def test_unknown_model_type_lists_what_is_installed():
    registry = make_registry(tiny_architecture())
    model = TinyVLM()
    model.config.model_type = "mystery"
    with pytest.raises(UnsupportedModelError) as info:
        resolve({}, model, registry=registry)
    assert "no installed plugin handles model_type 'mystery'" in str(info.value)
    assert "fake: tinyvlm" in str(info.value)


def test_architecture_can_be_named_in_the_spec():
    registry = make_registry(tiny_architecture())
    model = TinyVLM()
    model.config.model_type = "mystery"
    plan = resolve({"architecture": "tiny"}, model, registry=registry)
    assert plan.architecture == "tiny"


def test_component_model_is_frozen_data():
    comp = Component(name="vision", prefix=r"v\.(?P<layer>\d+)", roles={"mlp": ("fc",)})
    with pytest.raises(Exception, match="frozen"):
        comp.prefix = "x"


@pytest.mark.parametrize("body", ["import sys\nsys.exit(0)\n", "raise KeyboardInterrupt\n"])
def test_a_plugin_that_exits_or_interrupts_at_import_is_that_plugins_failure(tmp_path, monkeypatch, body):
    install_plugin(tmp_path, monkeypatch, "vlora-test-good", "vt_good", GOOD.format(arch="g", model_type="mt_g"))
    install_plugin(tmp_path, monkeypatch, "vlora-test-exit", "vt_exit", body)
    registry = Registry.discover(disabled=[])
    (failure,) = [f for f in registry.failures if f.distribution == "vlora-test-exit"]
    assert failure.reason.startswith("import failed: " + ("SystemExit" if "exit" in body else "KeyboardInterrupt"))
    assert _mine(registry) == ["vlora-test-good"]


def test_validate_names_a_plugin_that_failed_to_load_and_exits_5(tmp_path, monkeypatch, capsys):
    from vlora_core import plugins
    from vlora_core.cli import main

    install_plugin(tmp_path, monkeypatch, "vlora-test-exit", "vt_exit", "import sys\nsys.exit(0)\n")
    monkeypatch.setattr(plugins, "_DEFAULT", None)  # discover again, with the plugin installed
    spec = tmp_path / "s.yaml"
    spec.write_text("task: vqa\n")
    assert main(["validate", str(spec)]) == 5
    out = capsys.readouterr().out
    assert "plugin vt_exit (vlora-test-exit) failed to load: import failed: SystemExit" in out


REFERENCE = """
from pathlib import Path
from vlora_core import ArchitectureSpec, Component, ReferenceModel, hookimpl

@hookimpl
def vlora_architectures():
    return [ArchitectureSpec(name="{arch}", model_types=("{model_type}",), components=(
        Component(name="language", prefix=r"language\\.layers\\.(?P<layer>\\d+)", roles={{"mlp": ("mlp.up",)}}),
    ), references=(ReferenceModel(name="Shared-Ref", hub_id="org/shared", config_path=Path("x.json")),))]
"""


def test_two_plugins_bundling_one_reference_name_is_a_conflict(tmp_path, monkeypatch):
    from vlora_core import PluginConflictError

    install_plugin(tmp_path, monkeypatch, "vlora-test-ref-a", "vt_ref_a", REFERENCE.format(arch="a", model_type="mt_a"))
    install_plugin(tmp_path, monkeypatch, "vlora-test-ref-b", "vt_ref_b", REFERENCE.format(arch="b", model_type="mt_b"))
    registry = Registry.discover(disabled=[])
    with pytest.raises(PluginConflictError, match="'shared-ref' is bundled by vlora-test-ref-a and vlora-test-ref-b"):
        registry.find_reference("shared-ref")


def test_a_slow_plugin_is_named_on_every_command_and_long_names_widen_the_table(tmp_path, monkeypatch, capsys):
    import vlora_core.plugins as plugins
    from vlora_core.cli import main

    slow = "import time\ntime.sleep(1.3)\n" + GOOD.format(arch="a_very_long_architecture_name",
                                                           model_type="mt_slow")
    slow = slow.replace('name="a_very_long_architecture_name",',
                        'name="a_very_long_architecture_name", title="A Display Name Longer Than Most",')
    install_plugin(tmp_path, monkeypatch, "vlora-test-slow", "vt_slow", slow)
    install_plugin(tmp_path, monkeypatch, "vlora-test-good", "vt_good", GOOD.format(arch="g", model_type="mt_g"))
    monkeypatch.setattr(plugins, "_DEFAULT", None)  # discover again, with the two above
    try:
        main(["models"])  # a command that loads the plugins
        err = capsys.readouterr().err
        assert "plugin vlora-test-slow took 1." in err and "VLORA_DISABLE_PLUGINS=vt_slow skips it" in err
        assert "vlora-test-good" not in err
        main(["plugins"])
        out = capsys.readouterr().out
        assert "(entry point vt_slow; slow: 1." in out
        row = next(line for line in out.splitlines() if "a_very_long_architecture_name" in line)
        assert "a_very_long_architecture_name A Display Name Longer Than Most model_types: mt_slow" in row
        widths = {line.index("model_types:") for line in out.splitlines() if "model_types:" in line}
        assert len(widths) == 1  # every row's model_types in one column
        import json

        main(["plugins", "--json"])
        (entry,) = [p for p in json.loads(capsys.readouterr().out)["plugins"] if p["name"] == "vt_slow"]
        assert entry["load_seconds"] > 1 and entry["architectures"][0]["when"] == {}
    finally:
        monkeypatch.setattr(plugins, "_DEFAULT", None)


def test_the_kit_checks_every_entry_point_of_a_distribution(tmp_path, monkeypatch):
    """A distribution with two entry points: the kit finds the one that handles the model, and a failing
    one fails the check, by distribution name."""
    from tinyvlm import TinyVLM, tiny_architecture

    from vlora_core.testing import ConformanceError, check_plugin

    arch = tiny_architecture().model_dump(mode="json")
    other = GOOD.format(arch="other", model_type="mt_other")
    tiny = f"from vlora_core import ArchitectureSpec, hookimpl\n\n@hookimpl\ndef vlora_architectures():\n" \
           f"    return [ArchitectureSpec.model_validate({arch!r})]\n"
    for module, source in (("vt_two_a", other), ("vt_two_b", tiny)):
        (tmp_path / f"{module}.py").write_text(source)
    info = tmp_path / "vlora_test_two-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: vlora-test-two\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[vlora.plugins]\nvt_two_a = vt_two_a\nvt_two_b = vt_two_b\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    report = check_plugin("vlora-test-two", TinyVLM())  # the first entry point does not handle the model
    assert report.plugin.name == "vt_two_b" and report.plans["lora"].targets
    (tmp_path / "vt_two_a.py").write_text("raise ImportError('broken on purpose')\n")
    import sys
    sys.modules.pop("vt_two_a", None)
    with pytest.raises(ConformanceError, match="failed to load \\(entry point vt_two_a\\)"):
        check_plugin("vlora-test-two", TinyVLM())
