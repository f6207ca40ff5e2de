"""ONNX MatMul graphs for the browser benchmark: onnxruntime-web runs the same product as webtune
and TF.js. Inputs A [n, n] and B [n, n], output C = A @ B, opset 17.

Run: /usr/bin/python3 scripts/make_bench_models.py   (writes bench/models/matmul.onnx)
"""
import os

import onnx
from onnx import TensorProto, helper

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    a = helper.make_tensor_value_info("A", TensorProto.FLOAT, ["M", "K"])
    b = helper.make_tensor_value_info("B", TensorProto.FLOAT, ["K", "N"])
    c = helper.make_tensor_value_info("C", TensorProto.FLOAT, ["M", "N"])
    graph = helper.make_graph([helper.make_node("MatMul", ["A", "B"], ["C"])], "matmul", [a, b], [c])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="webtune scripts/make_bench_models.py")
    onnx.checker.check_model(model)
    path = os.path.join(ROOT, "bench", "models", "matmul.onnx")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    onnx.save(model, path)
    print(f"wrote {os.path.relpath(path, ROOT)}")


if __name__ == "__main__":
    main()
