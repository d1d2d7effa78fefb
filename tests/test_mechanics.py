"""The mechanics of the newest families on a tiny plain-torch model: mixture-of-experts weights (3-D
parameters), a router and gates that are never targets, linear-attention projections as a variant of the
attention role, an audio tower with its own toggle, and a projector part that follows the audio toggle."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from transformers import PretrainedConfig

from vlora_core import (
    ArchitectureSpec,
    Component,
    Registry,
    SpecArchitectureMismatch,
    UnsupportedModuleTypeError,
    apply,
    diff_lock,
    hookimpl,
    make_lock,
    resolve,
)

H, EXPERTS, WIDTH = 8, 4, 6  # hidden size, experts, expert width
VISION_LAYERS, AUDIO_LAYERS, LANGUAGE_LAYERS = 2, 2, 2


class TinyMoEConfig(PretrainedConfig):
    model_type = "tinymoe"


class Attn(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.q, self.k, self.v, self.o = (nn.Linear(H, H) for _ in range(4))

    def forward(self, x):
        w = torch.softmax(self.q(x) @ self.k(x).transpose(-1, -2), dim=-1)
        return self.o(w @ self.v(x))


class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.up, self.down = nn.Linear(H, 2 * H), nn.Linear(2 * H, H)

    def forward(self, x):
        return self.down(torch.relu(self.up(x)))


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attn, self.mlp = Attn(), MLP()

    def forward(self, x):
        x = x + self.attn(x)
        return x + self.mlp(x)


class Tower(nn.Module):
    def __init__(self, n: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(Block() for _ in range(n))

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


class Router(nn.Linear):
    """Like Llama-4's router: an nn.Linear whose forward returns a tuple."""

    def forward(self, x):
        logits = super().forward(x)
        return torch.softmax(logits, dim=-1), logits


class Experts(nn.Module):
    """Fused expert weights, as transformers stores them: (experts, out, in)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate_up_proj = nn.Parameter(torch.randn(EXPERTS, 2 * WIDTH, H) * 0.1)
        self.down_proj = nn.Parameter(torch.randn(EXPERTS, H, WIDTH) * 0.1)

    def forward(self, x, scores):
        gate, up = torch.einsum("bth,eoh->beto", x, self.gate_up_proj).chunk(2, dim=-1)
        out = torch.einsum("beti,ehi->beth", torch.nn.functional.silu(gate) * up, self.down_proj)
        return torch.einsum("beth,bte->bth", out, scores)


class MoE(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.router = Router(H, EXPERTS, bias=False)
        self.experts = Experts()
        self.shared = MLP()
        self.shared_gate = nn.Linear(H, 1)  # one output: a gate, never a target

    def forward(self, x):
        scores, _ = self.router(x)
        return self.experts(x, scores) + self.shared(x) * torch.sigmoid(self.shared_gate(x))


class LinearAttn(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.in_proj_qkv = nn.Linear(H, H)
        self.in_proj_a = nn.Linear(H, 2)  # one output per head: a gate
        self.conv1d = nn.Conv1d(H, H, kernel_size=3, groups=H, padding=1)  # depthwise
        self.out_proj = nn.Linear(H, H)

    def forward(self, x):
        h = self.conv1d(self.in_proj_qkv(x).transpose(1, 2)).transpose(1, 2)
        return self.out_proj(h * torch.sigmoid(self.in_proj_a(x)).mean(-1, keepdim=True))


class DecoderLayer(nn.Module):
    def __init__(self, linear: bool) -> None:
        super().__init__()
        if linear:
            self.linear_attn = LinearAttn()
        else:
            self.attn = Attn()
        self.mlp = MoE()

    def forward(self, x):
        mixer = self.linear_attn if hasattr(self, "linear_attn") else self.attn
        x = x + mixer(x)
        return x + self.mlp(x)


class Embedder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(H, H)

    def forward(self, x):
        return self.proj(x)


class TinyMoE(nn.Module):
    """vision (2 blocks), audio (2 blocks), projector (embed_vision, embed_audio), language (a linear-attention
    layer then a full-attention layer, each with a mixture of experts), lm_head."""

    def __init__(self) -> None:
        super().__init__()
        self.config = TinyMoEConfig()
        self.vision = Tower(VISION_LAYERS)
        self.audio = Tower(AUDIO_LAYERS)
        self.embed_vision, self.embed_audio = Embedder(), Embedder()
        self.embed = nn.Embedding(32, H)
        self.language = nn.Module()
        self.language.layers = nn.ModuleList(DecoderLayer(linear=i % 2 == 0) for i in range(LANGUAGE_LAYERS))
        self.lm_head = nn.Linear(H, 32, bias=False)

    def forward(self, pixels, sound, ids):
        x = torch.cat([self.embed_vision(self.vision(pixels)), self.embed_audio(self.audio(sound)), self.embed(ids)], 1)
        for layer in self.language.layers:
            x = layer(x)
        return self.lm_head(x)


LINEAR_ATTN = ("linear_attn.in_proj_qkv", "linear_attn.out_proj")
ATTN = ("attn.q", "attn.k", "attn.v", "attn.o")
FROZEN = {"mlp.router": "the MoE router", "mlp.shared_gate": "a gate with one output",
          "linear_attn.in_proj_a": "a gate with one output per head", "linear_attn.conv1d": "a depthwise convolution"}


def architecture(frozen: dict[str, str] | None = None) -> ArchitectureSpec:
    return ArchitectureSpec(name="tinymoe", title="TinyMoE", model_types=("tinymoe",), components=(
        Component(name="vision", prefix=r"vision\.layers\.(?P<layer>\d+)",
                  roles={"attention": ATTN, "mlp": ("mlp.up", "mlp.down")}),
        Component(name="audio", prefix=r"audio\.layers\.(?P<layer>\d+)",
                  roles={"attention": ATTN, "mlp": ("mlp.up", "mlp.down")}),
        Component(name="projector", prefix=r"embed_(?:vision|audio)", roles={"projection": ("proj",)},
                  follows={"embed_audio": "audio"}),
        Component(name="language", prefix=r"language\.layers\.(?P<layer>\d+)",
                  roles={"attention": (*ATTN, *LINEAR_ATTN),
                         "mlp": ("mlp.experts.gate_up_proj", "mlp.experts.down_proj", "mlp.shared.up",
                                 "mlp.shared.down")},
                  variants={leaf: "linear" for leaf in LINEAR_ATTN},
                  frozen=FROZEN if frozen is None else frozen),
    ))


class Plugin:
    def __init__(self, arch: ArchitectureSpec | None = None) -> None:
        self.arch = arch or architecture()

    @hookimpl
    def vlora_architectures(self):
        return [self.arch]


@pytest.fixture
def moe() -> TinyMoE:
    torch.manual_seed(0)
    return TinyMoE()


@pytest.fixture
def registry() -> Registry:
    return Registry.from_plugins(Plugin(), names=["tinymoe"])


def batch():
    torch.manual_seed(1)
    return torch.randn(2, 3, H), torch.randn(2, 2, H), torch.randint(0, 32, (2, 4))


def test_expert_weights_are_mlp_targets_counted_as_peft_creates_them(moe, registry):
    plan = resolve({"r": 2, "init_lora_weights": False}, moe, registry=registry)
    experts = [t for t in plan.targets if t.variant == "experts"]
    assert {t.name for t in experts} == {f"language.layers.{i}.mlp.experts.{p}" for i in range(LANGUAGE_LAYERS)
                                         for p in ("gate_up_proj", "down_proj")}
    gate_up = next(t for t in experts if t.leaf.endswith("gate_up_proj"))
    assert (gate_up.role, gate_up.experts, gate_up.out_features, gate_up.in_features) == ("mlp", EXPERTS, 2 * WIDTH, H)
    assert gate_up.lora_params == 2 * EXPERTS * (2 * WIDTH + H)  # PEFT: A is (in, r*E), B is (r*E, out)
    assert sorted(plan.to_lora_config().target_parameters) == sorted(t.name for t in experts)

    peft_model = apply(moe, {"r": 2, "init_lora_weights": False}, registry=registry)
    trainable = {n: p for n, p in peft_model.named_parameters() if p.requires_grad}
    assert sum(p.numel() for p in trainable.values()) == plan.trainable_params
    peft_model(*batch()).pow(2).mean().backward()
    assert [n for n, p in trainable.items() if p.grad is None] == []


def test_the_table_shows_each_variant_on_its_own_row(moe, registry):
    plan = resolve({}, moe, registry=registry)
    rows = [(r.component, r.label, r.modules, r.layers) for r in plan.summary() if r.component == "language"]
    assert rows == [("language", "attention", 4, "1"), ("language", "attention (linear)", 2, "0"),
                    ("language", "mlp", 4, "0-1"), ("language", f"mlp (experts: {EXPERTS})", 4, "0-1")]
    table = plan.table()
    assert "attention (linear)" in table and f"mlp (experts: {EXPERTS})" in table
    assert plan.to_dict()["summary"][0]["variant"] is None


def test_routers_gates_and_depthwise_convolutions_are_never_targets(moe, registry):
    plan = resolve({}, moe, registry=registry)
    names = {t.name for t in plan.targets}
    assert not any(leaf in name for name in names for leaf in FROZEN)
    assert plan.diagnostics == ()  # declared frozen: nothing unclassified
    undeclared = resolve({}, moe, registry=Registry.from_plugins(Plugin(architecture(frozen={})), names=["x"]))
    (warning,) = [d for d in undeclared.diagnostics if d.code == "unclassified-modules"]
    assert all(f"language.layers.*.{leaf}" in warning.message for leaf in FROZEN)


def test_a_router_whose_forward_peft_would_break_is_refused(moe, registry):
    with pytest.raises(UnsupportedModuleTypeError, match="the MoE router: a Router whose forward PEFT's LoRA"):
        resolve({"target_modules_extra": [r"language\.layers\.0\.mlp\.router"]}, moe, registry=registry)


def test_a_frozen_gate_named_by_the_user_is_adapted_with_a_warning(moe, registry):
    plan = resolve({"target_modules_extra": [r"language\.layers\.1\.mlp\.shared_gate"]}, moe, registry=registry)
    assert "language.layers.1.mlp.shared_gate" in {t.name for t in plan.targets}
    (warning,) = [d for d in plan.diagnostics if d.code == "frozen-target"]
    assert "never targets (a gate with one output)" in warning.message
    assert warning.location.field == "target_modules_extra[0]"


@pytest.mark.parametrize("field", [{"lora_dropout": 0.1}, {"use_dora": True}])
def test_expert_weights_refuse_what_peft_cannot_do_with_them(moe, registry, field):
    with pytest.raises(SpecArchitectureMismatch, match="is a stack of expert weights") as info:
        resolve(field, moe, registry=registry)
    assert "exclude_modules" in info.value.hint
    without = resolve({**field, "exclude_modules": [r".*\.experts\..*"]}, moe, registry=registry)
    assert not any(t.experts > 1 for t in without.targets)


def test_an_optional_leaf_may_be_missing_but_a_required_one_may_not(moe):
    from vlora_core import PatternMatchError

    def with_dense(**extra):
        arch = architecture()
        language = arch.component("language").model_copy(update={
            "roles": {**arch.component("language").roles, "mlp": (*arch.component("language").roles["mlp"],
                                                                   "mlp.dense_up")}, **extra})
        components = tuple(language if c.name == "language" else c for c in arch.components)
        return Registry.from_plugins(Plugin(arch.model_copy(update={"components": components})), names=["x"])

    with pytest.raises(PatternMatchError, match=r"leaf 'mlp\.dense_up' matches no module"):
        resolve({}, moe, registry=with_dense())
    plan = resolve({}, moe, registry=with_dense(optional=("mlp.dense_up",)))
    assert plan.lora_params == resolve({}, moe, registry=Registry.from_plugins(Plugin(), names=["x"])).lora_params


def test_finetune_mlp_modules_switches_the_experts(moe, registry):
    plan = resolve({"finetune_mlp_modules": False}, moe, registry=registry)
    assert {t.role for t in plan.targets} == {"attention"} and all(t.experts == 1 for t in plan.targets)


def test_the_audio_tower_has_its_own_toggle_and_overrides(moe, registry):
    on = resolve({"finetune_projector": "lora"}, moe, registry=registry)
    assert {t.layer for t in on.targets if t.component == "audio"} == set(range(AUDIO_LAYERS))
    assert {t.name for t in on.targets if t.component == "projector"} == {"embed_vision.proj", "embed_audio.proj"}
    assert [r.component for r in on.summary()][:4] == ["vision", "vision", "audio", "audio"]
    picked = resolve({"audio": {"layers": [1], "r": 4}}, moe, registry=registry)
    assert {(t.layer, t.r) for t in picked.targets if t.component == "audio"} == {(1, 4)}
    off = resolve({"finetune_audio_layers": False, "finetune_projector": "lora"}, moe, registry=registry)
    assert "audio" not in {t.component for t in off.targets}
    assert {t.name for t in off.targets if t.component == "projector"} == {"embed_vision.proj"}  # follows audio
    full = resolve({"finetune_audio_layers": False, "finetune_projector": "full"}, moe, registry=registry)
    assert [m.name for m in full.full_modules] == ["embed_vision"]
    assert full.to_lora_config().modules_to_save == ["embed_vision"]


def test_audio_switched_on_for_a_model_without_audio_is_an_error():
    from tinyvlm import FakePlugin, TinyVLM

    registry = Registry.from_plugins(FakePlugin(), names=["fake"])
    with pytest.raises(SpecArchitectureMismatch, match="TinyVLM has no audio tower") as info:
        resolve({"finetune_audio_layers": True}, TinyVLM(), registry=registry)
    assert info.value.location.field == "finetune_audio_layers"


@pytest.mark.parametrize(("spec", "field"), [({"finetune_audio_layers": False}, "finetune_audio_layers"),
                                             ({"audio": {"r": 4}}, "audio"),
                                             ({"finetune_cross_attention": False}, "finetune_cross_attention")])
def test_a_part_the_model_lacks_left_off_asks_for_nothing(spec, field):
    """One spec serves every size of a family (Gemma-4 with and without audio): off or unset, a toggle of an
    absent part plans as if it were not there, with a note."""
    from tinyvlm import FakePlugin, TinyVLM

    registry = Registry.from_plugins(FakePlugin(), names=["fake"])
    plan = resolve(spec, TinyVLM(), registry=registry)
    assert [t.name for t in plan.targets] == [t.name for t in resolve({}, TinyVLM(), registry=registry).targets]
    (note,) = [d for d in plan.diagnostics if d.code == "absent-part"]
    assert note.location.field == field


def test_a_lock_holds_expert_targets_by_logical_identity(moe, registry):
    plan = resolve({}, moe, registry=registry)
    lock = make_lock(plan)
    assert any(t["leaf"] == "mlp.experts.gate_up_proj" for t in lock["targets"])
    assert diff_lock(lock, plan).ok
    reranked = diff_lock(lock, resolve({"language": {"r": 4}}, moe, registry=registry))
    assert any("mlp.experts.gate_up_proj" in line for line in reranked.lines())
