"""Adapters already on disk, in five jobs: ``inspect`` (read the files and place every module by the installed
plugins), ``check`` (would it load into a model), ``migrate`` (rewrite it for another layout through each
module's logical identity), ``spec`` (the spec whose plan reproduces it) and ``merge`` (into the base's weights,
with the proof that it held). The files themselves are read
through PEFT's rules in ``vlora_core.peft.files``.
"""

from __future__ import annotations

from ..peft.files import AdaptedModule
from ..synthesis import AdapterSpec
from .check import AdapterCheck, check_adapter
from .inspect import Adapter, placed, read_adapter
from .merge import MergeResult, merge, merge_folder, save_merged
from .migrate import migrate_adapter, migration_map
from .spec import spec_for_adapter

__all__ = ["AdaptedModule", "Adapter", "AdapterCheck", "AdapterSpec", "MergeResult", "check_adapter", "merge",
           "merge_folder", "migrate_adapter", "migration_map", "placed", "read_adapter", "save_merged",
           "spec_for_adapter"]
