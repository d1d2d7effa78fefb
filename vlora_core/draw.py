"""Pictures of a plan: an SVG (``draw_svg``) and one self-contained HTML page (``draw_html``).

Per component (per stack of layers where a component has several), a grid of layers x rows, a row per role as
the plan table names it (``attention``, ``cross_attention``, ``mlp (experts: 128)``, ...): a cell is coloured
by the rank of the adapters in it, grey where nothing is adapted, darker grey (and a bar under an adapted one)
on a layer whose output the model never uses. A component without layers (the projector) is one cell per
target. Modules trained in full are purple boxes; totals stand beside each row. Several plans are drawn side
by side, each under its label.

This reads a ``TargetPlan`` and nothing else: it never resolves. Every cell carries ``data-*`` attributes
(component, stack, row, layer, state, r) so tools and tests can read the drawing back.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .report import render_compare, render_table
from .vocabulary import COMPONENT_ROLES, group_order, layer_count_key

if TYPE_CHECKING:
    from .plan import Target, TargetPlan

PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#9c755f")
FROZEN, UNUSED, FULL, INK, MUTED = "#e6e6e6", "#b4b4b4", "#7b3294", "#222222", "#666666"
CELL_H, GAP, LABEL_W, TOTALS_W, MARGIN, HEAD_H, FONT = 16, 1, 190, 250, 16, 22, 12
CHAR_EM = 0.62  # the widest average advance of DejaVu Sans / Helvetica / Arial text, in ems: text sizes the picture
TICK_EVERY, TICK_FONT = 5, 9  # layer numbers under each grid: 0, 5, 10, ... and the last layer
MAX_GRID_W = 900


@dataclass(frozen=True)
class Cell:
    x: float
    y: float
    w: float
    h: float
    fill: str
    attrs: dict[str, str]
    title: str
    unused: bool = False


def _colours(plans: list[TargetPlan]) -> dict[tuple[int, float], str]:
    """One colour per (rank, alpha), the same in every plan of one drawing."""
    keys = sorted({(t.r, t.lora_alpha) for p in plans for t in p.targets})
    return {k: PALETTE[i % len(PALETTE)] for i, k in enumerate(keys)}


def _panels(plan: TargetPlan) -> list[tuple[str, str | None, int | None]]:
    """(component, stack, layer count or None) for every part with targets or layers, in report order."""
    seen: dict[tuple[str, str | None], int | None] = {}
    for key, count in plan.layer_counts.items():
        comp, _, stack = key.partition(".")
        seen[(comp, stack or None)] = count
    for t in plan.targets:
        seen.setdefault((t.component, t.stack), None)
    for m in plan.full_modules:
        if m.component:
            seen.setdefault((m.component, None), None)
    order = list(seen)  # stacks in the order the plan counts them
    return sorted(((c, s, n) for (c, s), n in seen.items()), key=lambda p: (group_order(p[0], "")[0], p[0],
                                                                             order.index((p[0], p[1]))))


class _Canvas:
    def __init__(self, plans: list[tuple[str, TargetPlan]]) -> None:
        self.plans = plans
        self.colours = _colours([p for _, p in plans])
        widest = max([1, *(n or 1 for _, p in plans for _, _, n in _panels(p))])
        self.cell_w = max(4.0, min(14.0, MAX_GRID_W / widest))
        self.grid_w = widest * self.cell_w
        self.parts: list[str] = []
        self.right = 0.0  # the right edge of everything drawn so far (text included, by its estimated width)

    def text(self, x: float, y: float, s: str, *, size: int = FONT, fill: str = INK, weight: str = "normal",
             anchor: str = "start") -> None:
        if anchor == "start":
            self.right = max(self.right, x + CHAR_EM * size * len(s) * (1.08 if weight == "bold" else 1.0))
        self.parts.append(f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" fill="{fill}" font-weight="{weight}" '
                          f'text-anchor="{anchor}">{html.escape(s)}</text>')

    def cell(self, c: Cell) -> None:
        data = " ".join(f'data-{k}="{html.escape(v)}"' for k, v in c.attrs.items())
        self.parts.append(f'<rect class="cell" x="{c.x:.2f}" y="{c.y:.2f}" width="{c.w:.2f}" height="{c.h:.2f}" '
                          f'fill="{c.fill}" {data}><title>{html.escape(c.title)}</title></rect>')
        if c.unused and c.attrs.get("state") == "adapted":  # an adapted layer the model never uses
            self.parts.append(f'<rect x="{c.x:.2f}" y="{c.y + c.h - 3:.2f}" width="{c.w:.2f}" height="3" '
                              f'fill="{INK}"/>')

    def plan(self, label: str, plan: TargetPlan, x0: float, y0: float) -> float:
        """Draw one plan from (x0, y0); return the y below it."""
        y = y0
        if label:
            self.text(x0, y + 14, label, size=14, weight="bold")
            y += HEAD_H
        self.text(x0, y + 12, f"{plan.model} · {plan.architecture_title} · {plan.lora_params:,} LoRA parameters "
                  f"({100 * plan.lora_params / (plan.total_params or 1):.3f}%)", fill=MUTED)
        y += HEAD_H
        for comp, stack, count in _panels(plan):
            y = self.panel(plan, comp, stack, count, x0, y) + 8
        outside = [m for m in plan.full_modules if not m.component]
        if outside:
            y = self.full_row(plan, "outside the components", outside, x0, y) + 8
        return y

    def panel(self, plan: TargetPlan, comp: str, stack: str | None, count: int | None, x0: float, y: float) -> float:
        targets = [t for t in plan.targets if t.component == comp and t.stack == stack]
        title = comp + (f" · {stack}" if stack else "") + (f" · {count} layers" if count else "")
        params = sum(t.lora_params for t in targets)
        full = [m for m in plan.full_modules if m.component == comp and stack is None]
        self.text(x0, y + 13, title, weight="bold")
        self.text(x0 + LABEL_W + self.grid_w + 10, y + 13, f"{len(targets)} modules · {params:,} LoRA parameters"
                  if targets else "trained in full" if full else "frozen", fill=MUTED)
        y += HEAD_H
        rows: dict[str, list[Target]] = {}
        role_of: dict[str, str] = {}  # row label -> the role its targets have
        for t in targets:
            rows.setdefault(t.label, []).append(t)
            role_of[t.label] = t.role
        defaults = [r for r in COMPONENT_ROLES.get(comp, ()) if r in ("attention", "mlp", "projection")
                    and not (full and not count)]  # a projector trained in full: its box says it all
        for role in defaults:
            if role not in role_of.values():
                rows[role], role_of[role] = [], role
        order = sorted(rows, key=lambda label: (group_order(comp, role_of[label]), label))
        unused = set(plan.unused_layers.get(layer_count_key(comp, stack), ()))
        for label in order:
            ts = rows[label]
            self.text(x0 + LABEL_W - 6, y + CELL_H - 4, label, anchor="end")
            if count:
                by_layer: dict[int, list[Target]] = {}
                for t in ts:
                    if t.layer is not None:
                        by_layer.setdefault(t.layer, []).append(t)
                for layer in range(count):
                    self.cell(self.layer_cell(comp, stack, label, layer, by_layer.get(layer, []), layer in unused,
                                              x0 + LABEL_W + layer * self.cell_w, y))
                self.right = max(self.right, x0 + LABEL_W + count * self.cell_w)
            else:
                width = min(self.grid_w / max(1, len(ts)), 60.0)
                for i, t in enumerate(ts):
                    self.cell(self.target_cell(comp, stack, label, t, x0 + LABEL_W + i * width, y, width))
                if not ts:
                    self.cell(Cell(x0 + LABEL_W, y, 60 - GAP, CELL_H - GAP, FROZEN,
                                   {"component": comp, "stack": stack or "", "row": label, "layer": "",
                                    "state": "frozen", "r": ""}, f"{comp} · {label}: frozen"))
            n = sum(t.lora_params for t in ts)
            if ts:
                self.text(x0 + LABEL_W + self.grid_w + 10, y + CELL_H - 4,
                          f"{len(ts)} modules · {n:,} params", fill=MUTED)
            y += CELL_H
        if count:  # the layer numbers under the grid
            for layer in sorted({*range(0, count, TICK_EVERY), count - 1}):
                if layer == count - 1 or count - 1 - layer >= 2:  # the last one never crowds its neighbour
                    self.text(x0 + LABEL_W + (layer + 0.5) * self.cell_w, y + TICK_FONT + 1, str(layer),
                              size=TICK_FONT, fill=MUTED, anchor="middle")
            y += TICK_FONT + 3
        if full:
            y = self.full_row(plan, "trained in full", full, x0, y, comp=comp)
        return y

    def layer_cell(self, comp: str, stack: str | None, label: str, layer: int, ts: list[Target], unused: bool,
                   x: float, y: float) -> Cell:
        attrs = {"component": comp, "stack": stack or "", "row": label, "layer": str(layer)}
        where = f"{comp}{f' {stack}' if stack else ''} layer {layer} · {label}"
        if ts:
            ranks = {(t.r, t.lora_alpha) for t in ts}
            key = max(ranks)
            leaves = ", ".join(t.leaf or t.name for t in ts)
            title = (f"{where}: {leaves} · r={key[0]} alpha={key[1]:g} · {sum(t.lora_params for t in ts):,} params"
                     + (" · a layer whose output the model never uses" if unused else ""))
            return Cell(x, y, self.cell_w - GAP, CELL_H - GAP, self.colours[key],
                        {**attrs, "state": "adapted", "r": str(key[0])}, title, unused)
        state = "unused" if unused else "frozen"
        title = f"{where}: " + ("never used by the model, left out" if unused else "not adapted")
        return Cell(x, y, self.cell_w - GAP, CELL_H - GAP, UNUSED if unused else FROZEN,
                    {**attrs, "state": state, "r": ""}, title, unused)

    def target_cell(self, comp: str, stack: str | None, label: str, t: Target, x: float, y: float,
                    width: float) -> Cell:
        key = (t.r, t.lora_alpha)
        return Cell(x, y, width - GAP, CELL_H - GAP, self.colours[key],
                    {"component": comp, "stack": stack or "", "row": label, "layer": "", "state": "adapted",
                     "r": str(t.r), "name": t.name},
                    f"{t.name} · r={t.r} alpha={t.lora_alpha:g} · {t.lora_params:,} params")

    def full_row(self, plan: TargetPlan, label: str, modules: list, x0: float, y: float, comp: str = "") -> float:
        self.text(x0 + LABEL_W - 6, y + CELL_H - 4, label, anchor="end")
        width = min(self.grid_w / max(1, len(modules)), 160.0)
        for i, m in enumerate(modules):
            self.cell(Cell(x0 + LABEL_W + i * width, y, width - GAP, CELL_H - GAP, FULL,
                           {"component": m.component, "stack": "", "row": label, "layer": "", "state": "full",
                            "r": "", "name": m.name}, f"{m.name}: trained in full · {m.params:,} params"))
        self.text(x0 + LABEL_W + self.grid_w + 10, y + CELL_H - 4,
                  f"{len(modules)} in full · {sum(m.params for m in modules):,} params", fill=MUTED)
        return y + CELL_H

    def legend(self, x0: float, y: float) -> float:
        items = [(colour, f"r={r} alpha={a:g}") for (r, a), colour in self.colours.items()]
        items += [(FROZEN, "not adapted"), (UNUSED, "layer never used"), (FULL, "trained in full")]
        x = x0
        for colour, text in items:
            self.parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="12" height="12" fill="{colour}"/>')
            self.text(x + 16, y + 10, text, fill=MUTED)
            x += 24 + 7 * len(text)
        return y + 20

    def render(self) -> str:
        bottom, x = MARGIN, MARGIN
        for label, plan in self.plans:  # each plan as wide as its grid and its longest line of text
            self.right = x + LABEL_W + self.grid_w + TOTALS_W
            bottom = max(bottom, self.plan(label, plan, x, MARGIN))
            x = self.right + MARGIN
        bottom = self.legend(MARGIN, bottom + 4)
        width, height = max(x, self.right + MARGIN), bottom + MARGIN
        head = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
                f'viewBox="0 0 {width:.0f} {height:.0f}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif">')
        return "\n".join([head, f'<rect width="{width:.0f}" height="{height:.0f}" fill="#ffffff"/>',
                          *self.parts, "</svg>"]) + "\n"


def draw_svg(plans: TargetPlan | list[tuple[str, TargetPlan]]) -> str:
    """An SVG picture of a plan, or of several ``(label, plan)`` side by side."""
    if not isinstance(plans, list):
        plans = [("", plans)]
    return _Canvas(plans).render()


def draw_html(plans: TargetPlan | list[tuple[str, TargetPlan]]) -> str:
    """One self-contained HTML page: the picture, then the plan table (or the plans side by side)."""
    if not isinstance(plans, list):
        plans = [("", plans)]
    first = plans[0][1]
    table = render_table(first) if len(plans) == 1 else render_compare(plans)
    title = f"vlora plan · {first.model}"
    return ("<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{html.escape(title)}</title>\n<style>body{{font-family:sans-serif;margin:24px}}"
            "pre{background:#f6f6f6;padding:12px;overflow-x:auto}</style>\n</head>\n<body>\n"
            f"<h1>{html.escape(title)}</h1>\n{draw_svg(plans)}<pre>{html.escape(table)}</pre>\n</body>\n</html>\n")


__all__ = ["draw_html", "draw_svg"]
