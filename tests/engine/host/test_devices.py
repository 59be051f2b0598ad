"""GPU offload support and the devices ggml sees."""

from __future__ import annotations

from pinaivu_local.engine.host.devices import gpu_layers, list_devices, supports_gpu_offload


def test_layers_fall_back_to_the_cpu_without_offload() -> None:
    assert gpu_layers(-1, offload=True) == -1
    assert gpu_layers(20, offload=True) == 20
    assert gpu_layers(-1, offload=False) == 0


def test_devices_include_the_cpu() -> None:
    devices = list_devices()
    assert devices is not None
    assert any(d.type == "cpu" for d in devices)
    if not supports_gpu_offload():
        assert not any(d.type in ("gpu", "igpu") for d in devices)
