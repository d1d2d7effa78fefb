"""A tiny VLM in plain torch and a fake plugin describing it (core tests use no built-in plugin)."""

from __future__ import annotations

import sys
import textwrap

import torch
import torch.nn as nn
from transformers import PretrainedConfig

from vlora_core import ArchitectureSpec, Component, Registry, hookimpl

HIDDEN = 8
VISION_LAYERS = 4
LANGUAGE_LAYERS = 3
GLOBAL_LAYERS = 2


class TinyConfig(PretrainedConfig):
    model_type = "tinyvlm"


class Attn(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = torch.softmax(self.q(x) @ self.k(x).transpose(-1, -2), dim=-1)
        return self.o(w @ self.v(x))


class MLP(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.up, self.down = nn.Linear(d, 2 * d), nn.Linear(2 * d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(torch.relu(self.up(x)))


class Block(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.attn, self.mlp = Attn(d), MLP(d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm(x))
        return x + self.mlp(x)


class Projector(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.linear_1, self.linear_2 = nn.Linear(d, 2 * d), nn.Linear(2 * d, d)
        self.scale = nn.Parameter(torch.eye(d))  # a bare 2-D parameter, like Gemma-3's projector weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(torch.tanh(self.linear_1(x))) @ self.scale


class Tower(nn.Module):
    def __init__(self, n: int, d: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(Block(d) for _ in range(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class TinyVLM(nn.Module):
    """vision (a patch Conv2d, 4 local blocks, 2 global blocks), projector (2 Linear and a bare parameter),
    language (Embedding + 3 blocks), lm_head."""

    def __init__(self) -> None:
        super().__init__()
        self.config = TinyConfig()
        self.patch = nn.Conv2d(3, HIDDEN, kernel_size=2, stride=2)
        self.vision = Tower(VISION_LAYERS, HIDDEN)
        self.vision_global = Tower(GLOBAL_LAYERS, HIDDEN)
        self.projector = Projector(HIDDEN)
        self.embed = nn.Embedding(32, HIDDEN)
        self.language = Tower(LANGUAGE_LAYERS, HIDDEN)
        self.lm_head = nn.Linear(HIDDEN, 32, bias=False)

    def forward(self, pixels: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        img = self.patch(pixels).flatten(2).transpose(1, 2)  # (B, patches, d)
        img = self.projector(self.vision_global(self.vision(img)))
        x = torch.cat([img, self.embed(ids)], dim=1)
        return self.lm_head(self.language(x))


ATTENTION = ("attn.q", "attn.k", "attn.v", "attn.o")
MLP_LEAVES = ("mlp.up", "mlp.down")


def tiny_architecture(**changes) -> ArchitectureSpec:
    components = {
        "vision": Component(name="vision", prefix=r"vision\.layers\.(?P<layer>\d+)",
                            roles={"attention": ATTENTION, "mlp": MLP_LEAVES}),
        "projector": Component(name="projector", prefix=r"projector",
                               roles={"projection": ("linear_1", "linear_2")}),
        "language": Component(name="language", prefix=r"language\.layers\.(?P<layer>\d+)",
                              roles={"attention": ATTENTION, "mlp": MLP_LEAVES}),
    }
    components.update(changes)
    return ArchitectureSpec(
        name="tiny", title="TinyVLM", model_types=("tinyvlm",),
        components=tuple(c for c in components.values() if c is not None),
    )


def stacked_vision() -> Component:
    """The vision component as two stacks of layers: local ``vision`` and ``vision_global``."""
    return Component(name="vision", prefix=r"(?P<stack>vision|vision_global)\.layers\.(?P<layer>\d+)",
                     roles={"attention": ATTENTION, "mlp": MLP_LEAVES})


class FakePlugin:
    def __init__(self, arch: ArchitectureSpec | None = None) -> None:
        self.arch = arch or tiny_architecture()

    @hookimpl
    def vlora_architectures(self) -> list[ArchitectureSpec]:
        return [self.arch]


def make_registry(arch: ArchitectureSpec) -> Registry:
    return Registry.from_plugins(FakePlugin(arch), names=["fake"])


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(1)
    return torch.randn(2, 3, 4, 4), torch.randint(0, 32, (2, 5))


def snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def install_plugin(tmp_path, monkeypatch, dist: str, module: str, source: str) -> None:
    """Install a plugin the way pip does: a module plus a .dist-info with an entry point, on sys.path."""
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(source))
    info = tmp_path / f"{dist.replace('-', '_')}-1.2.3.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text(f"[vlora.plugins]\n{module} = {module}\n")
    monkeypatch.syspath_prepend(str(tmp_path))  # also invalidates import caches
    sys.modules.pop(module, None)
