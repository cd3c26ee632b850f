"""Every pass registers itself on import; this package imports them all so the registry is complete."""

from tradeoff.passes import (  # noqa: F401 - imported for their registration
    cluster_weights,
    export_onnx,
    fuse_batchnorm,
    fuse_transformer,
    lowrank_svd,
    prune_ffn,
    prune_heads,
    prune_layers,
    prune_magnitude,
    prune_nm,
    prune_structured,
    quantize_bf16,
    quantize_dynamic,
    quantize_embedding,
    quantize_fp16,
    quantize_nncf,
    quantize_qat,
    quantize_static,
    quantize_weight_only,
)
from tradeoff.passes.base import Context, Pass, PassConfig, build_pass, get_pass, register, registered_passes

__all__ = ["Context", "Pass", "PassConfig", "build_pass", "get_pass", "register", "registered_passes"]
