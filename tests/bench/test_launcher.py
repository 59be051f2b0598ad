"""The llama_cpp.server launcher: repacking forced through llama.cpp's default model params."""

from __future__ import annotations

import types

import llama_cpp.llama_cpp as llama
import pytest

from pinaivu_local.bench.llama_cpp_launcher import force_weight_repack, main


@pytest.mark.parametrize("enabled", [True, False])
def test_defaults_carry_the_setting(enabled: bool) -> None:
    module = types.SimpleNamespace(llama_model_default_params=llama.llama_model_default_params)
    original = force_weight_repack(module, enabled)
    assert original is llama.llama_model_default_params
    params = module.llama_model_default_params()
    assert params.use_extra_bufts is enabled
    assert params.n_gpu_layers == llama.llama_model_default_params().n_gpu_layers  # the rest untouched


@pytest.mark.parametrize("argv", [[], ["--weight-repack", "maybe", "--"], ["--weight-repack", "on", "--model"]])
def test_usage_errors(argv: list[str]) -> None:
    with pytest.raises(SystemExit, match="usage"):
        main(argv)
