"""The user's own patterns: extra targets (``target_modules_extra``), exclusions (``exclude_modules``) and
modules trained in full (``modules_to_save``, with tied weights), each matched by the time-bounded ``regex``
engine."""

from __future__ import annotations

import re

from ..boundary import bounded_fullmatches
from ..decisions import Decision
from ..diagnostics import Location
from ..errors import ComponentOverlapError, UnsupportedModuleTypeError, UserPatternError
from ..vocabulary import EXTRA_ROLE
from .holders import Pick

_WRAPPABLE = "LoRA wraps Linear, Conv1d/2d/3d, Embedding, HF Conv1D and 2-D parameters"


class UserRules:
    """What the user's patterns add, remove and train in full (a part of ``Resolution``)."""

    decided: dict[str, Decision]

    def extra_targets(self, i: int, pattern: str, chosen: dict[str, Pick], full_names: list[str]
                      ) -> dict[str, Pick]:
        """The targets ``target_modules_extra[i]`` adds (those not chosen already)."""
        where = self.spec.location("target_modules_extra", i)
        matched = _user_matches(pattern, self.tree.names, where)
        hits = [e for e in self.tree.entries if e.name in matched]
        if not hits:
            raise UserPatternError(
                f"pattern {pattern!r} matches no module of this model",
                where=where,
                hint="patterns are full-name regular expressions (fullmatch), e.g. "
                "'model\\.visual\\.blocks\\.0\\.attn\\.qkv'; see the names with `vlora plan --json`",
            )
        added: dict[str, Pick] = {}
        for entry in hits:
            if entry.name in chosen or entry.name in added:
                continue
            holder = self.holder_of(entry.name)
            if holder is None:
                raise ComponentOverlapError(
                    f"pattern {pattern!r} matches {entry.name}, which lies in no component",
                    where=where,
                    hint="extra targets must lie inside a component's layers or projector; narrow the pattern, or "
                    "train the module in full with modules_to_save",
                )
            if entry.kind is None:
                raise UnsupportedModuleTypeError(
                    f"pattern {pattern!r} matches {entry.name}, a {entry.type_name}, which LoRA cannot wrap",
                    where=where,
                    hint=f"{_WRAPPABLE}; narrow the pattern to those",
                )
            reason = self.frozen_reason(entry.name)
            if reason is not None and entry.custom_forward:
                raise UnsupportedModuleTypeError(
                    f"pattern {pattern!r} matches {entry.name}, {reason}: a {entry.type_name} whose forward "
                    "PEFT's LoRA wrapper would break (it adds the adapter's output to the module's own)",
                    where=where,
                    hint="leave it out of target_modules_extra; narrow the pattern",
                )
            if reason is not None:
                self.warn("frozen-target", f"target_modules_extra adds {entry.name}, which {self.who.render()} "
                          f"never targets ({reason})", where)
            if holder.holder in full_names:
                raise ComponentOverlapError(
                    f"pattern {pattern!r} matches {entry.name}, inside the fully trained projector {holder.holder}",
                    where=where,
                    hint="a fully trained module cannot also get adapters; use finetune_projector: lora instead",
                )
            added[entry.name] = Pick(holder.at(entry.name[len(holder.holder) + 1:], EXTRA_ROLE), False)
        return added

    def frozen_reason(self, name: str) -> str | None:
        """Why the plugin says module ``name`` is never a target (None when it does not say so)."""
        holder = self.holder_of(name)
        if holder is None or holder.holder == name:
            return None
        comp = self.arch.component(holder.component)
        return comp.frozen.get(name[len(holder.holder) + 1:]) if comp is not None else None

    def excluded(self, i: int, pattern: str, chosen: dict[str, Pick]) -> set[str]:
        """The planned targets ``exclude_modules[i]`` removes (recorded as its decisions)."""
        where = self.spec.location("exclude_modules", i)
        matched = _user_matches(pattern, list(chosen), where)
        dropped = {n for n in chosen if n in matched}
        if not dropped:
            raise UserPatternError(
                f"pattern {pattern!r} matches none of the {len(chosen)} planned targets",
                where=where,
                hint="patterns are full-name regular expressions (fullmatch); remove it or fix it",
            )
        for n in dropped:
            p = chosen[n].placement
            self.decided[n] = Decision("excluded", p.component, p.role, p.layer, p.leaf, pattern, i)
        return dropped

    def saved_modules(self, i: int, pattern: str, chosen: dict[str, Pick], full_names: list[str]
                      ) -> dict[str, Location]:
        """One ``modules_to_save`` entry: the outermost modules it matches, each trained in full."""
        where = self.spec.location("modules_to_save", i)
        names = [n for n in self.tree.names if n]
        matched = _user_matches(pattern, names, where)
        if not matched and re.fullmatch(r"\w+", pattern):  # a plain name: the modules whose name ends with it
            matched = {n for n in names if n.rpartition(".")[2] == pattern}
        if not matched:
            raise UserPatternError(
                f"modules_to_save entry {pattern!r} matches no module of this model",
                where=where,
                hint="write a full dotted name or a full-name regular expression (fullmatch), e.g. lm_head or "
                "'model\\.language_model\\.embed_tokens'; see the names with `vlora plan --json`",
            )
        out: dict[str, Location] = {}
        for name in sorted(n for n in matched if not any(n.startswith(m + ".") for m in matched)):
            self.check_saved(name, chosen, full_names, where, what=f"modules_to_save entry {pattern!r} matches {name}")
            out[name] = where
        return out

    def check_saved(self, name: str, chosen: dict[str, Pick], full_names: list[str], where: Location, *,
                    what: str) -> None:
        """A module to train in full must not be, hold or lie in a LoRA target or the full projector."""
        inside = sorted(t for t in chosen if t == name or t.startswith(name + ".") or name.startswith(t + "."))
        if inside:
            relation = "which is" if inside[0] == name else "which holds" if inside[0].startswith(name) else "inside"
            more = f" and {len(inside) - 1:,} more" if len(inside) > 1 else ""
            raise ComponentOverlapError(
                f"{what}, {relation} the LoRA target {inside[0]}{more}",
                where=where,
                hint="a module trains either in full or through adapters: narrow the entry, or drop those targets "
                "with exclude_modules",
            )
        projector = next((f for f in full_names if name == f or name.startswith(f + ".") or f.startswith(name + ".")),
                         None)
        if projector is not None:
            relation = "which is" if projector == name else "inside" if name.startswith(projector) else "which holds"
            raise ComponentOverlapError(
                f"{what}, {relation} the projector {projector}, trained in full already (finetune_projector: full)",
                where=where,
                hint="leave it out of modules_to_save",
            )
        if not self.tree.subtree_params(name) and not self.tree.tied_with(name):
            raise UserPatternError(f"{what}, which has no parameters to train", where=where,
                                   hint="name a module with weights, e.g. lm_head or embed_tokens")

    def tied_partners(self, saved: dict[str, Location], chosen: dict[str, Pick]) -> dict[str, str]:
        """Saved modules whose weight another module shares (tie_word_embeddings): PEFT trains one copy for
        both (``ensure_weight_tying``), so the partner is saved too; returns module -> the module it is tied to,
        both ways."""
        tied: dict[str, str] = {}
        for name in saved:
            for a, b in self.tree.tied_with(name) if name not in tied else ():
                mine, other = (a, b) if a.startswith(name + ".") else (b, a)
                partner = other.rpartition(".")[0]
                if partner == name or partner in tied:
                    continue
                self.check_saved(partner, chosen, [], saved[name], what=f"{name} shares its weight with {partner}")
                tied[name], tied[partner] = partner, name
                self.warn("tied-weights", f"modules_to_save: {name} shares its {mine.rpartition('.')[2]} with "
                          f"{partner} (tied embeddings), so PEFT trains one copy for both "
                          f"(ensure_weight_tying) and both change; to train {name} alone, untie them first "
                          "(tie_word_embeddings: false in the model's config, before loading)", saved[name])
        return tied


def _user_matches(pattern: str, names: list[str], where: Location) -> set[str]:
    """The names a user pattern fullmatches, by the boundary's time-bounded engine: a pattern that backtracks
    catastrophically (``([a-z._0-9]+)+!``) is refused instead of running for minutes."""
    return bounded_fullmatches(pattern, names, where=where, what="pattern", error=UserPatternError)


__all__ = ["UserRules"]
