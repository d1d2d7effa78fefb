"""Module trees on their own: what is read from a live model, from a config on the meta device, and from
references, and the errors for references that are not models."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn as nn
from transformers import LlamaConfig, LlamaForCausalLM

from vlora_core import ModelLoadError, ModuleTree, UsageError, module_tree, tree_from_module
from vlora_core.modeltree import tree_from_config
from vlora_core.vocabulary import CONV, EMBEDDING, LINEAR


def test_a_live_model_is_read_module_by_module(model, registry):
    tree = tree_from_module(model)
    assert tree.model_type == "tinyvlm" and tree.source == "TinyVLM"
    assert tree.total_params == sum(p.numel() for p in model.parameters())
    assert tree.names == [n for n, _ in model.named_modules()]
    kinds = {n: tree.get(n).kind for n in ("patch", "embed", "lm_head", "vision.layers.0.norm")}
    assert kinds == {"patch": CONV, "embed": EMBEDDING, "lm_head": LINEAR, "vision.layers.0.norm": None}
    patch = tree.get("patch")
    assert (patch.in_features, patch.out_features, patch.kernel) == (3, 8, 4)
    assert patch.lora_params(2) == 2 * 3 * 4 + 8 * 2  # PEFT's conv LoRA: A is a conv, B a 1x1 conv
    assert tree.get("lm_head").lora_params(2, dora=True) == 2 * (8 + 32) + 32
    assert tree.param_shape("projector.scale") == (8, 8) and "projector.scale" not in tree
    assert tree.subtree_params("vision") == sum(p.numel() for p in model.vision.parameters())
    assert tree.subtree_params("projector", bias=True) == 16 + 8
    assert module_tree(tree, registry) is tree


def test_tied_parameters_count_once():
    class Tied(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(10, 4)
            self.head = nn.Linear(4, 10, bias=False)
            self.head.weight = self.embed.weight

    tree = tree_from_module(Tied())
    assert tree.total_params == 40 and [name for name, _ in tree.params] == ["embed.weight"]


def test_a_config_is_built_on_the_meta_device_with_the_same_counts():
    config = LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                         num_key_value_heads=1, vocab_size=64)
    tree = tree_from_config(config)
    torch.manual_seed(0)
    real = LlamaForCausalLM(config)
    assert tree.model_type == "llama" and tree.source == "LlamaConfig (meta device)"
    assert tree.total_params == sum(p.numel() for p in real.parameters())
    assert tree.names == [n for n, _ in real.named_modules()]
    assert tree.config["hidden_size"] == 16


@pytest.mark.parametrize(("setup", "words"), [
    (lambda d: d / "missing", "no file or folder 'missing' in"),
    (lambda d: (d / "empty").mkdir() or d / "empty", "directory holds no config.json"),
    (lambda d: (d / "c.json").write_text("{oops") and d / "c.json", "cannot read config"),
    (lambda d: (d / "c.json").write_text('{"hidden_size": 4}') and d / "c.json", "config has no model_type"),
    (lambda d: (d / "c.json").write_text('{"model_type": "no_such_family"}') and d / "c.json",
     r"transformers [\d.]+ does not know model_type 'no_such_family'"),
])
def test_references_that_are_not_models(tmp_path, registry, setup, words):
    ref = setup(tmp_path)
    with pytest.raises(ModelLoadError, match=words):
        module_tree(str(ref), registry)


def test_a_hub_id_offline_and_uncached_is_one_clear_error(monkeypatch, registry):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="not in the local cache, and HF_HUB_OFFLINE is set"):
        module_tree("nobody-here/no-such-model-xyz", registry)


def test_something_that_is_no_model_at_all(registry):
    with pytest.raises(UsageError, match="cannot read a model from a int"):
        module_tree(42, registry)


def test_a_config_json_path_and_its_directory_give_the_same_tree(tmp_path, registry):
    config = LlamaConfig(hidden_size=8, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2,
                         num_key_value_heads=1, vocab_size=32)
    (tmp_path / "config.json").write_text(json.dumps(config.to_dict()))
    by_dir, by_file = module_tree(str(tmp_path), registry), module_tree(str(tmp_path / "config.json"), registry)
    assert isinstance(by_dir, ModuleTree) and by_dir.names == by_file.names
    assert by_dir.total_params == by_file.total_params > 0 and by_dir.source == str(tmp_path)


def test_an_unreachable_hub_is_said_within_its_timeout_even_when_the_name_lookup_hangs(monkeypatch):
    import socket
    import time

    from vlora_core import modeltree

    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: time.sleep(30))  # an offline resolver stalls
    start = time.perf_counter()
    assert modeltree._hub_reachable(timeout=0.5) is False
    assert time.perf_counter() - start < 2.0
