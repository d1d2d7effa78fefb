"""vLLM: the ``vllm serve`` command line an adapter of this plan needs, from the serving facts derived from the
vLLM wheel (``serving``): ``--enable-lora``, ``--max-lora-rank`` for the plan's largest rank, the tower/connector
and MoE-format flags where the plan's modules need them. What vLLM would not apply as trained (dropped, refused,
unknown) is named in the header and on stderr, never left out silently.
"""

from __future__ import annotations

import shlex
from typing import Any

from ..cache import tree_for
from ..plan import TargetPlan
from ..plugins import default_registry
from ..serving import AS_TRAINED, engine_table, serve_plan
from ..serving.check import vllm_max_rank
from .common import Export, export_file, model_id
from .versions import tool_version

TITLE = "vLLM (vllm serve command line)"


def export(plan: TargetPlan, tree: Any = None, version: Any = None) -> Export:
    version = version or tool_version("vllm")
    tree = tree if tree is not None else tree_for(plan.model, default_registry())
    check = serve_plan(plan, tree, "vllm", version.versions, subject=plan.model)
    rank = vllm_max_rank(engine_table("vllm", version.versions), check.max_rank)  # written always, not only > 16
    flags = [f for f in check.flags if not f.startswith("--max-lora-rank")]
    command = [f"vllm serve {shlex.quote(model_id(plan))}", "--enable-lora",
               f"--max-lora-rank {rank or check.max_rank}", *flags,
               '--lora-modules "adapter=$ADAPTER"']
    lost = list(check.refusals) + [f"{f.group}: {len(f.names)} modules {f.verdict}: {f.reason}"
                                   for f in check.findings if f.verdict not in AS_TRAINED]
    notes = [f"{f.group}: {len(f.names)} modules {f.verdict}: {f.reason}"
             for f in check.findings if f.verdict in AS_TRAINED and f.flag]
    body = ('ADAPTER="${1:?usage: serve.sh ADAPTER_DIR (the folder save_pretrained wrote)}"\n'
            "exec " + " \\\n  ".join(command) + "\n")
    return export_file(plan, "vllm", body, lost=lost, notes=notes, version=version,
                       kwargs={"flags": flags, "max_lora_rank": rank, "ok": check.ok,
                               "serving": check.to_dict()},
                       extra=[f"model class {check.model_class}: "
                              + ("everything serves as trained" if check.ok else "NOT everything serves as trained")])


__all__ = ["TITLE", "export"]
