"""Device and dtype choices shared by the model loaders."""

from __future__ import annotations

import torch

from genbench.errors import UsageError

DTYPES = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
          "fp16": torch.float16, "float16": torch.float16}


def resolve_device(device: str | None, field: str = "device") -> torch.device:
    """``None``/``"auto"`` -> cuda if available else cpu; otherwise a device torch understands."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise UsageError(field, device, "auto, cpu, cuda, cuda:N") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(field, device, "cpu (no CUDA device is visible here) or auto")
    return dev


def resolve_dtype(dtype: str | None, device: torch.device, field: str = "dtype") -> torch.dtype:
    """Default bf16 on GPU, float32 on CPU (half precision on CPU is slow and not what the numbers were taken with)."""
    if dtype in (None, "auto"):
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if dtype not in DTYPES:
        raise UsageError(field, dtype, ["auto", "bf16", "fp16", "fp32"])
    return DTYPES[dtype]
