"""`--dtype bfloat16`: the exporter writes half-precision (bfloat16) weights inside the graphs and
keeps the float32 boundary of the package contract. ONNX Runtime's CPU provider has no bfloat16
MatMul, so numbers are checked on a GPU only (scripts/gpu_check.sh); here the graphs' structure."""

import onnx
from onnx import TensorProto

from vidflow_export import contract as c
from vidflow_export.manifest import read as read_manifest
from vidflow_export.shaped import export_shaped

SHAPE = {"hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 4, "intermediate_size": 96}


def test_bfloat16_weights_inside_float32_boundary(tmp_path):
    out = tmp_path / "pkg"
    export_shaped(str(out), num_layers=1, dtype="bfloat16", frames=2, grid=2, seq_len=60, **SHAPE)
    m = read_manifest(str(out / c.MANIFEST_FILE))
    assert m["dtype"] == "bfloat16"
    g = onnx.load(str(out / c.layer_file(0)))
    big = [t for t in g.graph.initializer if len(t.dims) == 2 and min(t.dims) >= 64]
    assert big, "the layer graph holds its projection matrices"
    assert all(t.data_type == TensorProto.BFLOAT16 for t in big), sorted(
        (t.name, t.data_type) for t in big)
    for port in list(g.graph.input) + list(g.graph.output):
        assert port.type.tensor_type.elem_type == TensorProto.FLOAT, port.name
