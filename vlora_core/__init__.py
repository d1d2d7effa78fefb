"""vlora: exact, validated, explainable LoRA targets for vision-language models.

The public API is everything in ``__all__``; plugins and users import only from here.
"""

from .architecture import KNOWN_COMPONENTS, KNOWN_ROLES, ArchitectureSpec, Component, ReferenceModel, UnusedLayers
from .errors import (
    ComponentOverlapError,
    EmptySelectionError,
    LayerSelectionError,
    LockMismatchError,
    ModelLoadError,
    PatternMatchError,
    PluginConflictError,
    PluginError,
    ResolutionError,
    SpecArchitectureMismatch,
    SpecError,
    SpecFileError,
    SpecValidationError,
    UnsupportedModelError,
    UnsupportedModuleTypeError,
    UsageError,
    UserPatternError,
    VloraError,
)
from .hookspecs import hookimpl
from .lock import LockDiff, diff_lock, make_lock, read_lock, write_lock
from .modeltree import ModuleEntry, ModuleTree, module_tree, tree_from_module
from .plan import FullModule, Target, TargetPlan, apply
from .plugins import PluginFailure, PluginInfo, Registry, default_registry
from .resolve import resolve
from .spec import TASK_PRESETS, ComponentOverride, LayerRange, ProjectorOverride, VisionLoRASpec, load_spec

__all__ = [
    "KNOWN_COMPONENTS",
    "KNOWN_ROLES",
    "TASK_PRESETS",
    "ArchitectureSpec",
    "Component",
    "ComponentOverlapError",
    "ComponentOverride",
    "EmptySelectionError",
    "FullModule",
    "LayerRange",
    "LayerSelectionError",
    "LockDiff",
    "LockMismatchError",
    "ModelLoadError",
    "ModuleEntry",
    "ModuleTree",
    "PatternMatchError",
    "PluginConflictError",
    "PluginError",
    "PluginFailure",
    "PluginInfo",
    "ProjectorOverride",
    "ReferenceModel",
    "Registry",
    "ResolutionError",
    "SpecArchitectureMismatch",
    "SpecError",
    "SpecFileError",
    "SpecValidationError",
    "Target",
    "TargetPlan",
    "UnsupportedModelError",
    "UnsupportedModuleTypeError",
    "UnusedLayers",
    "UsageError",
    "UserPatternError",
    "VisionLoRASpec",
    "VloraError",
    "apply",
    "default_registry",
    "diff_lock",
    "hookimpl",
    "load_spec",
    "make_lock",
    "module_tree",
    "read_lock",
    "resolve",
    "tree_from_module",
    "write_lock",
]
