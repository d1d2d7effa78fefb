"""vlora: exact, validated, explainable LoRA targets for vision-language models.

The public API is everything in ``__all__``; plugins and users import only from here.

The modules form layers, each importing only from lower ones. The one list of them, with each module's
layer and job, is the module map in docs/how-it-works.md; tests/test_layers.py reads it and holds the
package to it.
"""

from .adapters import (
    AdaptedModule,
    Adapter,
    AdapterCheck,
    AdapterSpec,
    MergeResult,
    check_adapter,
    merge,
    migrate_adapter,
    read_adapter,
    spec_for_adapter,
)
from .apply import apply
from .architecture import ArchitectureSpec, Component, ReferenceModel, UnusedLayers
from .diagnostics import Diagnostic, Location
from .draw import draw_html, draw_svg
from .errors import (
    AdapterError,
    ComponentOverlapError,
    EmptySelectionError,
    LayerSelectionError,
    LockMismatchError,
    ModelLoadError,
    PatternMatchError,
    PluginConflictError,
    PluginError,
    ResolutionError,
    ResolutionErrors,
    SpecArchitectureMismatch,
    SpecError,
    SpecFileError,
    SpecValidationError,
    StepSimulationError,
    UnsupportedModelError,
    UnsupportedModuleTypeError,
    UsageError,
    UserPatternError,
    VloraError,
)
from .hookspecs import hookimpl
from .interop import Export, Imported, export_plan, import_config
from .layouts import (
    VISION_TOWER_LAYOUTS,
    VISION_TOWER_PREFIXES,
    VISION_TOWER_ROLES,
    Layout,
    any_of,
    first_unused_layer,
    layers_of,
    unused_after_feature_layer,
    vision_tower_components,
)
from .lock import LockDiff, diff_lock, make_lock, read_lock, write_lock
from .modeltree import ModuleEntry, ModuleTree, module_tree, tree_from_module
from .placement import Placement
from .plan import FullModule, Target, TargetPlan
from .plugins import PluginFailure, PluginInfo, Registry, default_registry
from .resolve import resolve
from .serving import ServeCheck, serve_adapter, serve_plan
from .spec import (
    TASK_PRESETS,
    ComponentOverride,
    LayerRange,
    LearningRateScales,
    ProjectorOverride,
    VisionLoRASpec,
    load_spec,
)
from .training import param_groups
from .vocabulary import COMPONENT_ORDER, COMPONENT_ROLES, KNOWN_COMPONENTS, KNOWN_ROLES, ROLE_ORDER, TargetKey

__all__ = [
    "COMPONENT_ORDER",
    "COMPONENT_ROLES",
    "KNOWN_COMPONENTS",
    "KNOWN_ROLES",
    "ROLE_ORDER",
    "TASK_PRESETS",
    "VISION_TOWER_LAYOUTS",
    "VISION_TOWER_PREFIXES",
    "VISION_TOWER_ROLES",
    "AdaptedModule",
    "Adapter",
    "AdapterCheck",
    "AdapterError",
    "AdapterSpec",
    "ArchitectureSpec",
    "Component",
    "ComponentOverlapError",
    "ComponentOverride",
    "Diagnostic",
    "EmptySelectionError",
    "Export",
    "FullModule",
    "Imported",
    "LayerRange",
    "LayerSelectionError",
    "Layout",
    "LearningRateScales",
    "Location",
    "LockDiff",
    "LockMismatchError",
    "MergeResult",
    "ModelLoadError",
    "ModuleEntry",
    "ModuleTree",
    "PatternMatchError",
    "Placement",
    "PluginConflictError",
    "PluginError",
    "PluginFailure",
    "PluginInfo",
    "ProjectorOverride",
    "ReferenceModel",
    "Registry",
    "ResolutionError",
    "ResolutionErrors",
    "ServeCheck",
    "SpecArchitectureMismatch",
    "SpecError",
    "SpecFileError",
    "SpecValidationError",
    "StepSimulationError",
    "Target",
    "TargetKey",
    "TargetPlan",
    "UnsupportedModelError",
    "UnsupportedModuleTypeError",
    "UnusedLayers",
    "UsageError",
    "UserPatternError",
    "VisionLoRASpec",
    "VloraError",
    "any_of",
    "apply",
    "check_adapter",
    "default_registry",
    "diff_lock",
    "draw_html",
    "draw_svg",
    "export_plan",
    "first_unused_layer",
    "hookimpl",
    "import_config",
    "layers_of",
    "load_spec",
    "make_lock",
    "merge",
    "migrate_adapter",
    "module_tree",
    "param_groups",
    "read_adapter",
    "read_lock",
    "resolve",
    "serve_adapter",
    "serve_plan",
    "spec_for_adapter",
    "tree_from_module",
    "unused_after_feature_layer",
    "vision_tower_components",
    "write_lock",
]
