"""Property-based fuzzing (hypothesis), in bounded time: any spec data gives a ``VisionLoRASpec`` or a
``VloraError``, never another exception; resolving it against a real (tiny) model gives a plan or a
``VloraError``. Examples are derandomized so CI is repeatable; VLORA_FUZZ_EXAMPLES=N explores more."""

from __future__ import annotations

import math
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vlora_core import VisionLoRASpec, VloraError, resolve
from vlora_core.spec import spec_from_data

EXAMPLES = int(os.environ.get("VLORA_FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

FIELDS = sorted(VisionLoRASpec.model_fields)
COMPONENT_FIELDS = ["r", "lora_alpha", "layers"]

scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-10, max_value=5000), st.integers(), st.just(10**4000),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(["pissa", "olora", "pissa_niter_4", "gaussian", "lora", "full", "frozen", "vqa", "ocr",
                     "captioning", "domain_adaptation", r"vision\.layers\.0\.attn\.q", "([a-z]+)+!", "a{4294967296}",
                     "[", "tiny", "none", "all", "lora_only"]),
)
layers = st.one_of(st.lists(st.integers(min_value=-2, max_value=12), max_size=8),
                   st.fixed_dictionaries({}, optional={"last": st.integers(-1, 12), "first": st.integers(-1, 12)}),
                   st.dictionaries(st.text(max_size=5), st.lists(st.integers(0, 5), max_size=3), max_size=2))
values = st.recursive(st.one_of(scalars, layers),
                      lambda inner: st.one_of(st.lists(inner, max_size=4),
                                              st.dictionaries(st.one_of(st.sampled_from(COMPONENT_FIELDS),
                                                                        st.text(max_size=8)), inner, max_size=4)),
                      max_leaves=12)
keys = st.one_of(st.sampled_from(FIELDS), st.sampled_from(FIELDS), st.text(max_size=12),
                 st.sampled_from(["a[b", "list", "lora_rank", "freeze_vision_tower", "vision.r", ""]),
                 st.none(), st.integers(-2, 2))  # YAML keys need not be strings (`? x`, `1: y`)
spec_data = st.dictionaries(keys, values, max_size=6)


def _spec_or_vlora_error(data):
    try:
        spec = spec_from_data(data)
    except VloraError as exc:
        assert str(exc) and exc.diagnostics  # one message, rendered from its diagnostics
        return None
    assert isinstance(spec, VisionLoRASpec)
    assert math.isfinite(spec.lora_alpha) and spec.r >= 1
    return spec


@FUZZ
@given(spec_data)
def test_any_spec_data_is_a_spec_or_a_vlora_error(data):
    _spec_or_vlora_error(data)


@FUZZ
@given(st.one_of(spec_data, values))
def test_any_data_at_all_is_a_spec_or_a_vlora_error(data):  # not only mappings: lists, numbers, text
    _spec_or_vlora_error(data)


@FUZZ
@given(st.dictionaries(st.sampled_from(FIELDS), values, max_size=5))
def test_constructing_a_spec_in_python_raises_vlora_errors_only(data):
    try:
        VisionLoRASpec(**data)
    except VloraError:
        pass


@FUZZ
@given(data=spec_data)
def test_resolving_any_spec_against_a_real_model_is_a_plan_or_a_vlora_error(model, registry, data):
    spec = _spec_or_vlora_error(data)
    if spec is None:
        return
    try:
        plan = resolve(spec, model, registry=registry)
    except VloraError as exc:
        assert 2 <= exc.exit_code <= 6, exc
        return
    assert plan.targets or plan.full_modules
    assert sum(t.lora_params for t in plan.targets) == plan.lora_params


@pytest.mark.parametrize("data", [{"a[b": 1}, {"list": []}, {"r": 10**4000}, {"lora_alpha": float("nan")},
                                  {"layers": {"last": 10**4000}}, {"": None}, {"vision": {"layers": {"": [0]}}},
                                  {None: None}, {1: "x"}, {("a", "b"): 1}, {"vision": {None: 1}}])
def test_inputs_fuzzing_found_stay_errors(data):
    with pytest.raises(VloraError):
        spec_from_data(data)
