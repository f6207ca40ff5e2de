#!/usr/bin/python3
"""ONNX exports of the tiny test models (and the bundled demo model) in the layout of Hugging Face
Optimum's "text-generation-with-past" decoder export, as transformers.js loads it, plus PyTorch
goldens. torch 1.13's torch.onnx.export (opset 14, do_constant_folding=True) of onnx_decoders.py,
whose module tree and parameter names are transformers 4.46's, so node and initializer names are
the ones Optimum emits. Debian has no onnxruntime for Python: scripts/check_onnx_fixtures.mjs runs
every file through onnxruntime-web (wasm) in Node against these goldens. Fixed seeds; reruns give
identical bytes.

Run: cd scripts && /usr/bin/python3 make_onnx_fixtures.py

Writes
  packages/model/test/fixtures/onnx/<name>/   (name = tiny-llama, tiny-gpt2; weights = the committed
      models/<name>/model.safetensors) config.json, generation_config.json, tokenizer.json,
      tokenizer_config.json (copied) and
        onnx/model.onnx        f32
        onnx/model_fp16.onnx   every weight initializer stored as float16 and followed by a Cast to
                               float32; activations and graph inputs/outputs stay float32 (so the graph
                               is the f32 graph with rounded weights and one Cast per weight; ORT then
                               computes in f32 and the goldens are exact up to summation order)
        onnx/model_q4.onnx     Linear weights as com.microsoft MatMulNBits (see "q4" below)
  packages/model/test/fixtures/onnx/tiny-llama-external/  the f32 tiny-llama with every initializer in
      onnx/model.onnx_data (onnx.save save_as_external_data, all_tensors_to_one_file, size_threshold 0)
  demo-app/public/models/webtune-demo/onnx/model_q4.onnx  the bundled demo llama (F16 safetensors), q4
  packages/model/test/fixtures/onnx/goldens/{tiny-llama,tiny-gpt2,webtune-demo}.json

Graph inputs / outputs (all variants)
  input_ids int64 [batch_size, sequence_length]
  attention_mask int64 [batch_size, past_sequence_length + sequence_length]
  position_ids int64 [batch_size, sequence_length]
  past_key_values.{i}.key / .value float32 [batch_size, kv_heads, past_sequence_length, head_dim]
  -> logits float32 [batch_size, sequence_length, vocab]
     present.{i}.key / .value float32 [batch_size, kv_heads, past_sequence_length + sequence_length, head_dim]
  (K is cached after RoPE, before GQA repeat.) An empty past is a [batch, kv_heads, 0, head_dim] tensor.

Where each HF parameter ends up in model.onnx (checked value by value by this script; the full map,
with the exact onnx::MatMul_<n> numbers, is written to goldens/<name>.json "initializerMap")
  llama
    model.embed_tokens.weight [V, H]           initializer of that name, input 0 of /model/embed_tokens/Gather; as HF
    model.layers.{i}.self_attn.{q,k,v,o}_proj.weight [out, in]
    model.layers.{i}.mlp.{gate,up,down}_proj.weight [out, in]
                                               initializer onnx::MatMul_<n> [in, out] = TRANSPOSED, found as input 1
                                               of node /model/layers.{i}/self_attn/q_proj/MatMul (etc.); the <n> are
                                               torch's value numbers: map through the node name, never the number
    model.layers.{i}.{input,post_attention}_layernorm.weight, model.norm.weight
                                               initializer of that name (Mul in the decomposed RMSNorm); as HF
    lm_head.weight (tied to model.embed_tokens.weight in every model here)
                                               a SECOND, transposed copy of the embedding: onnx::MatMul_<n> [H, V],
                                               input 1 of /lm_head/MatMul (torch folds Transpose(shared param))
  gpt2
    transformer.wte.weight / transformer.wpe.weight   initializers of those names (/transformer/wte/Gather,
                                               /transformer/wpe/Gather); as HF
    transformer.h.{i}.attn.c_attn / attn.c_proj / mlp.c_fc / mlp.c_proj .weight [in, out] (Conv1D)
                                               initializer of that name, NOT transposed (HF Conv1D is already
                                               [in, out]), input 1 of Gemm /transformer/h.{i}/attn/c_attn/Gemm (etc.)
                                               whose input 0 is the activation reshaped to 2D; .bias is input 2
    transformer.h.{i}.ln_{1,2}.{weight,bias}, transformer.ln_f.{weight,bias}
                                               initializers of those names (decomposed LayerNorm at opset 14)
    lm_head.weight (tied to transformer.wte.weight) transposed copy onnx::MatMul_<n> [H, V], /lm_head/MatMul
  Not parameters (leave them alone): llama rotary inv_freq folded into a Constant node output onnx::Expand_<n>
  [1, head_dim/2, 1] (cos/sin are computed from position_ids at run time, no cache tables); the llama
  causal/padding mask is built at run time (Range/Greater/Equal/Where, finfo(f32).min); gpt2's
  attn.bias tril buffer is ONE Constant node output onnx::Slice_<n> bool [1, 1, n_positions, n_positions]
  shared by all layers; plus the usual small shape Constants.

model_fp16.onnx: the weight initializers above keep their names and shapes but are FLOAT16; each feeds one
  Cast(to=FLOAT) node named "<initializer>_Cast" whose output "<initializer>_fp32" replaces the initializer
  in every consumer (so an importer follows MatMul/Gemm/Gather/Mul input -> Cast -> initializer).

model_q4.onnx: every Linear MatMul / Conv1D Gemm except the tied lm_head becomes
  com.microsoft MatMulNBits(A, B_Q4, scales) with attributes K=in, N=out, bits=4, block_size=32 (every K
  here is a multiple of 32), no zero_points input (zero point 8), no accuracy_level attribute (default 0 =
  f32 compute), plus an opset import {domain "com.microsoft", version 1}.
    B  uint8 [N, K/32, 16]: row n = output feature n, quantized along K; byte j of a block holds element 2j
       in the LOW nibble and element 2j+1 in the high nibble.
    scales float32 [N * K/32] (flat, block index fastest: scales[n * k_blocks + b]), as ORT's quantizer writes.
    dequant W[k, n] = (q - 8) * scale; the HF Linear weight is W^T, the GPT-2 Conv1D weight is W.
  Quantizer: ORT's symmetric RTN (MatMul4BitsQuantizer / DefaultWeightOnlyQuantizer is_symmetric=True ->
  MLAS BlockwiseQuantizer, range2scale): per block take the element of largest magnitude WITH its sign,
  m, scale = m / -8 (so the scale may be negative and m maps to code 0), q = clamp(roundf(w * (1/scale) + 8),
  0, 15) in float32 (round half away from zero; scale 0 -> reciprocal 0 -> q = 8).
  Names (llama): node /model/layers.{i}/self_attn/q_proj/MatMul_Q4, initializers
    model.layers.{i}.self_attn.q_proj.MatMul.weight_Q4 and ..._scales (the node path with "." and ".weight",
    as in transformers.js q4 exports); the f32 onnx::MatMul_<n> initializer is gone.
  Names (gpt2): node /transformer/h.{i}/attn/c_attn/Gemm_Q4 (output: a fresh "<node>_output_0") followed by
    Add /transformer/h.{i}/attn/c_attn/Gemm_Q4_Add(that, transformer.h.{i}.attn.c_attn.bias) writing the old
    Gemm output; initializers transformer.h.{i}.attn.c_attn.weight_Q4 / _scales (ORT's "<B name>_Q4"
    convention). ORT's own quantizer leaves Gemm alone; we convert it, with the bias as a separate Add
    because MatMulNBits' optional bias input is missing from older runtimes (and the WebGPU JSEP kernel).
  The tied lm_head stays a plain f32 MatMul on its onnx::MatMul_<n> [H, V] copy and the embedding Gather
  stays f32, so an importer that ties lm_head to the embedding reproduces the q4 goldens exactly.
  Goldens for q4 are PyTorch with the dequantized weights (and f32 everything else).

Goldens (per model): inputIds [2, 16] from goldens/tiny-llama.json (a prompt of 8 demo-tokenizer ids, batch
  1, for the demo model), attentionMask all ones, positionIds arange; for each variant the no-past logits
  and a with-past call: the first `pastSplit` tokens with an empty past, then the remaining tokens with
  that call's present.* as past_key_values (attention_mask ones over all tokens, position_ids continuing);
  `logitsWithPast` are the second call's logits and equal logits[:, pastSplit:] within 1e-5 (times the
  largest |logit| when that is > 1, as for the trained demo model; checked here, stored as pastCheckMaxDiff).
  f32 logits are also checked against tiny_models.CausalLM (1e-5).
"""
import copy
import io
import json
import os
import shutil
import warnings

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper, TensorProto

from fixture_io import ROOT, b64, write_fixture
from onnx_decoders import build
from tiny_models import CausalLM, load_hf_model_dir, load_tokenizer

GEN = "scripts/make_onnx_fixtures.py"
FIX = "packages/model/test/fixtures"
OUT = f"{FIX}/onnx"
DEMO = "demo-app/public/models/webtune-demo"
OPSET = 14
BLOCK = 32
PAST_SPLIT = 10
COPY_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json")
TOL = {"f32": 1e-4, "fp16": 1e-4, "q4": 1e-3}  # for onnxruntime-web vs these goldens (max abs logit diff)


# ----------------------------------------------------------------------------- export

def io_names(m):
    kv = [f"{i}.{t}" for i in range(m.num_layers) for t in ("key", "value")]
    ins = ["input_ids", "attention_mask", "position_ids"] + [f"past_key_values.{x}" for x in kv]
    outs = ["logits"] + [f"present.{x}" for x in kv]
    dyn = {"input_ids": {0: "batch_size", 1: "sequence_length"},
           "attention_mask": {0: "batch_size", 1: "past_sequence_length + sequence_length"},
           "position_ids": {0: "batch_size", 1: "sequence_length"},
           "logits": {0: "batch_size", 1: "sequence_length"}}
    for n in ins[3:]:
        dyn[n] = {0: "batch_size", 2: "past_sequence_length"}
    for n in outs[1:]:
        dyn[n] = {0: "batch_size", 2: "past_sequence_length + sequence_length"}
    return ins, outs, dyn


def export(m, config):
    """torch.onnx.export traced with batch 2, 3 new tokens, a past of 4 (shapes stay symbolic)."""
    g = torch.Generator().manual_seed(0)
    b, s, past = 2, 3, 4
    ids = torch.randint(0, config["vocab_size"], (b, s), generator=g)
    am = torch.ones(b, past + s, dtype=torch.int64)
    pos = torch.arange(past, past + s)[None].expand(b, s).contiguous()
    pkv = [torch.randn(b, m.kv_heads, past, m.head_dim, generator=g) for _ in range(2 * m.num_layers)]
    ins, outs, dyn = io_names(m)
    f = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(m, (ids, am, pos, *pkv), f, input_names=ins, output_names=outs, dynamic_axes=dyn,
                          opset_version=OPSET, do_constant_folding=True)
    model = onnx.load_from_string(f.getvalue())
    for n in model.graph.node:
        n.doc_string = ""
    model.doc_string = f"generated by {GEN} (torch {torch.__version__} torch.onnx.export, opset {OPSET})"
    onnx.checker.check_model(model)
    return model


def inits(model):
    return {t.name: t for t in model.graph.initializer}


def module_path(node_name):
    """'/model/layers.0/self_attn/q_proj/MatMul' -> 'model.layers.0.self_attn.q_proj'."""
    return node_name.strip("/").rsplit("/", 1)[0].replace("/", ".")


def weight_map(model, params, tied_to):
    """Every HF parameter -> its initializer/node in the f32 export, verified by value."""
    init = inits(model)
    rows, seen = [], set()
    for n in model.graph.node:
        if n.op_type == "Gather" and n.input[0] in init:
            rows.append({"hf": n.input[0], "initializer": n.input[0], "node": n.name, "op": "Gather",
                         "transposed": False})
        elif n.op_type == "MatMul" and n.input[1] in init:
            path = module_path(n.name)
            hf = path + ".weight"
            row = {"hf": hf, "initializer": n.input[1], "node": n.name, "op": "MatMul", "transposed": True}
            if hf not in params:
                assert path == "lm_head" and tied_to, hf
                row["tiedTo"] = tied_to
            rows.append(row)
        elif n.op_type == "Gemm" and n.input[1] in init:
            attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
            assert attrs.get("transA", 0) == 0 and attrs.get("transB", 0) == 0
            assert attrs.get("alpha", 1.0) == 1.0 and attrs.get("beta", 1.0) == 1.0
            rows.append({"hf": n.input[1], "initializer": n.input[1], "node": n.name, "op": "Gemm",
                         "transposed": False, "bias": n.input[2]})
    for r in rows:
        seen.add(r["initializer"])
    for name in init:
        if name in params and name not in seen:
            cons = [n.name for n in model.graph.node if name in n.input]
            rows.append({"hf": name, "initializer": name, "node": cons[0], "op": "param", "transposed": False})
    for r in rows:
        arr = numpy_helper.to_array(init[r["initializer"]])
        ref = params[r.get("tiedTo", r["hf"])].numpy()
        if r["transposed"]:
            ref = ref.T
        assert arr.dtype == np.float32 and arr.shape == ref.shape and np.array_equal(arr, ref), r
        r["shape"] = list(arr.shape)
    covered = {r["hf"] for r in rows}
    assert covered >= set(params), sorted(set(params) - covered)
    extra = [t.name for t in model.graph.initializer if t.name not in {r["initializer"] for r in rows}]
    assert not extra, extra  # every initializer is a weight; non-weights are Constant nodes
    return rows


# ----------------------------------------------------------------------------- fp16

def to_fp16(model, rows):
    m = copy.deepcopy(model)
    names = {r["initializer"] for r in rows}
    new_inits, casts = [], []
    for t in m.graph.initializer:
        if t.name in names:
            arr = numpy_helper.to_array(t).astype(np.float16)
            new_inits.append(numpy_helper.from_array(arr, t.name))
            casts.append(helper.make_node("Cast", [t.name], [t.name + "_fp32"], name=t.name + "_Cast",
                                          to=TensorProto.FLOAT))
        else:
            new_inits.append(t)
    for n in m.graph.node:
        for k, x in enumerate(n.input):
            if x in names:
                n.input[k] = x + "_fp32"
    nodes = casts + list(m.graph.node)
    del m.graph.initializer[:]
    m.graph.initializer.extend(new_inits)
    del m.graph.node[:]
    m.graph.node.extend(nodes)
    onnx.checker.check_model(m)
    return m


# ----------------------------------------------------------------------------- q4

def quantize_q4(w):
    """w: float32 [K, N] (MatMul B). ORT symmetric blockwise RTN along K. Returns (packed uint8 [N, K/32, 16],
    scales float32 [N * K/32], dequantized float32 [K, N])."""
    k, n = w.shape
    assert k % BLOCK == 0, (k, BLOCK)
    kb = k // BLOCK
    blocks = np.ascontiguousarray(w.T).reshape(n, kb, BLOCK).astype(np.float32)
    mn, mx = blocks.min(-1), blocks.max(-1)
    m = np.where(np.abs(mx) > np.abs(mn), mx, mn).astype(np.float32)
    scale = (m / np.float32(-8.0)).astype(np.float32)
    with np.errstate(divide="ignore"):
        recip = np.where(scale != 0, np.float32(1.0) / scale, np.float32(0.0)).astype(np.float32)
    x = (blocks * recip[..., None]).astype(np.float32) + np.float32(8.0)  # float32 ops, as MLAS
    x = x.astype(np.float64)
    r = np.sign(x) * np.floor(np.abs(x) + 0.5)  # roundf: half away from zero
    q = np.clip(r, 0, 15).astype(np.uint8)
    packed = (q[..., 0::2] | (q[..., 1::2] << 4)).astype(np.uint8)
    deq = ((q.astype(np.float32) - np.float32(8.0)) * scale[..., None]).astype(np.float32)
    return packed, scale.reshape(-1), np.ascontiguousarray(deq.reshape(n, k).T)


def to_q4(model, rows):
    """Returns (model, q4 rows, {hf param: dequantized HF-layout tensor})."""
    m = copy.deepcopy(model)
    by_node = {r["node"]: r for r in rows if r["op"] in ("MatMul", "Gemm") and "tiedTo" not in r}
    init = inits(m)
    drop, add_inits, nodes, qrows, deq = set(), [], [], [], {}
    for n in m.graph.node:
        r = by_node.get(n.name)
        if r is None:
            nodes.append(n)
            continue
        w = numpy_helper.to_array(init[r["initializer"]])
        packed, scales, dq = quantize_q4(w)
        k, nn_ = w.shape
        base = module_path(n.name) + ".MatMul.weight" if r["op"] == "MatMul" else r["initializer"]
        bq, sc = base + "_Q4", base + "_scales"
        add_inits += [numpy_helper.from_array(packed, bq), numpy_helper.from_array(scales, sc)]
        drop.add(r["initializer"])
        out = n.output[0] if r["op"] == "MatMul" else n.name + "_Q4_output_0"
        nodes.append(helper.make_node("MatMulNBits", [n.input[0], bq, sc], [out], name=n.name + "_Q4",
                                      domain="com.microsoft", K=k, N=nn_, bits=4, block_size=BLOCK))
        if r["op"] == "Gemm":
            nodes.append(helper.make_node("Add", [out, r["bias"]], [n.output[0]], name=n.name + "_Q4_Add"))
        deq[r["hf"]] = torch.from_numpy(dq.T.copy() if r["transposed"] else dq)
        qrows.append({"hf": r["hf"], "node": n.name + "_Q4", "B": bq, "scales": sc, "K": k, "N": nn_,
                      "bits": 4, "blockSize": BLOCK, "replaces": r["node"],
                      **({"bias": r["bias"], "biasAdd": n.name + "_Q4_Add"} if r["op"] == "Gemm" else {})})
    keep = [t for t in m.graph.initializer if t.name not in drop]
    del m.graph.initializer[:]
    m.graph.initializer.extend(keep + add_inits)
    del m.graph.node[:]
    m.graph.node.extend(nodes)
    m.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    onnx.checker.check_model(m)
    return m, qrows, deq


# ----------------------------------------------------------------------------- goldens

def run(m, ids, start=0, past=None):
    b, s = ids.shape
    if past is None:
        past = [torch.zeros(b, m.kv_heads, 0, m.head_dim) for _ in range(2 * m.num_layers)]
    am = torch.ones(b, start + s, dtype=torch.int64)
    pos = torch.arange(start, start + s)[None].expand(b, s)
    with torch.no_grad():
        out = m(ids, am, pos, *past)
    return out[0], list(out[1:])


def variant_golden(config, params, ids, split):
    m = build(config, params).eval()
    logits, _ = run(m, ids)
    _, present = run(m, ids[:, :split])
    second, _ = run(m, ids[:, split:], split, present)
    d = float((second - logits[:, split:]).abs().max())
    assert d <= 1e-5 * max(1.0, float(logits.abs().max())), d  # 1e-5 relative to the largest logit
    return m, logits, {"logits": b64(logits, "f32"), "logitsWithPast": b64(second, "f32"), "pastCheckMaxDiff": d}


def save(model, rel):
    path = os.path.join(ROOT, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    onnx.save(model, path)
    print(f"wrote {rel} ({os.path.getsize(path)} bytes)")


def copy_meta(src_dir, dst_rel):
    dst = os.path.join(ROOT, dst_rel)
    os.makedirs(dst, exist_ok=True)
    for fn in COPY_FILES:
        shutil.copyfile(os.path.join(src_dir, fn), os.path.join(dst, fn))


def do_model(name, src_rel, dst_rel, ids, variants, golden_rel, external_rel=None):
    src = os.path.join(ROOT, src_rel)
    config, params = load_hf_model_dir(src)
    tied = "lm_head.weight" not in params
    emb = "transformer.wte.weight" if config["model_type"] == "gpt2" else "model.embed_tokens.weight"
    m32 = build(config, params).eval()
    base = export(m32, config)
    rows = weight_map(base, params, emb if tied else None)
    split = PAST_SPLIT if ids.shape[1] > PAST_SPLIT else ids.shape[1] // 2
    out = {}
    if "f32" in variants or "fp16" in variants:
        copy_meta(src, dst_rel)
    _, logits32, g32 = variant_golden(config, params, ids, split)
    ref = CausalLM(config, params).forward(ids).detach()
    d = float((logits32 - ref).abs().max())
    assert d <= 1e-5, d
    if "f32" in variants:
        save(base, f"{dst_rel}/onnx/model.onnx")
        out["f32"] = {"file": "onnx/model.onnx", **g32, "causalLmMaxDiff": d}
        if external_rel:
            copy_meta(src, external_rel)
            path = os.path.join(ROOT, external_rel, "onnx", "model.onnx")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            data = os.path.join(os.path.dirname(path), "model.onnx_data")
            if os.path.exists(data):
                os.remove(data)  # onnx appends to an existing data file
            onnx.save(copy.deepcopy(base), path, save_as_external_data=True, all_tensors_to_one_file=True,
                      location="model.onnx_data", size_threshold=0)
            print(f"wrote {external_rel}/onnx/model.onnx ({os.path.getsize(path)} bytes) + model.onnx_data "
                  f"({os.path.getsize(data)} bytes)")
    if "fp16" in variants:
        m16 = to_fp16(base, rows)
        save(m16, f"{dst_rel}/onnx/model_fp16.onnx")
        p16 = {k: v.half().float() for k, v in params.items()}
        _, _, g = variant_golden(config, p16, ids, split)
        out["fp16"] = {"file": "onnx/model_fp16.onnx", **g}
    if "q4" in variants:
        mq, qrows, deq = to_q4(base, rows)
        save(mq, f"{dst_rel}/onnx/model_q4.onnx")
        pq = {**params, **deq}
        _, lq, g = variant_golden(config, pq, ids, split)
        out["q4"] = {"file": "onnx/model_q4.onnx", **g, "q4Nodes": qrows,
                     "maxAbsDiffVsF32": float((lq - logits32).abs().max())}
    payload = {
        "model": name,
        "note": "PyTorch logits (tiny_models/onnx_decoders eager semantics) of each ONNX variant's weights: f32 = the "
                "safetensors weights upcast; fp16 = rounded to float16; q4 = MatMulNBits-dequantized Linear weights. "
                "logitsWithPast: call 1 = ids[:, :pastSplit] with an empty past, call 2 = ids[:, pastSplit:] with "
                "call 1's present.* (attention_mask ones over all tokens, position_ids continuing).",
        "modelDir": dst_rel,
        "externalDataDir": external_rel,
        "opset": OPSET,
        "modelType": config["model_type"],
        "numLayers": m32.num_layers, "kvHeads": m32.kv_heads, "headDim": m32.head_dim,
        "vocabSize": config["vocab_size"], "tiedLmHead": tied,
        "inputIds": ids.tolist(),
        "attentionMask": [[1] * ids.shape[1]] * ids.shape[0],
        "positionIds": [list(range(ids.shape[1]))] * ids.shape[0],
        "pastSplit": split,
        "tolerance": {k: TOL[k] for k in out},
        "initializerMapNote": "initializerMap: every HF parameter in the f32 export (onnx/model.onnx, also the graph the "
                              "fp16/q4 files derive from); variants.q4.q4Nodes lists the MatMul/Gemm rows q4 replaces",
        "initializerMap": rows,
        "variants": out,
    }
    write_fixture(golden_rel, GEN, payload)


def main():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    with open(os.path.join(ROOT, FIX, "goldens/tiny-llama.json")) as f:
        ids = torch.tensor(json.load(f)["inputIds"], dtype=torch.int64)
    do_model("tiny-llama", f"{FIX}/models/tiny-llama", f"{OUT}/tiny-llama", ids, ("f32", "fp16", "q4"),
             f"{OUT}/goldens/tiny-llama.json", external_rel=f"{OUT}/tiny-llama-external")
    do_model("tiny-gpt2", f"{FIX}/models/tiny-gpt2", f"{OUT}/tiny-gpt2", ids, ("f32", "fp16", "q4"),
             f"{OUT}/goldens/tiny-gpt2.json")
    tok = load_tokenizer(os.path.join(ROOT, DEMO, "tokenizer.json"))
    demo_ids = tok.encode("Call me Ishmael. The whale")[:8]
    assert len(demo_ids) == 8, demo_ids
    do_model("webtune-demo", DEMO, DEMO, torch.tensor([demo_ids]), ("q4",), f"{OUT}/goldens/webtune-demo.json")


if __name__ == "__main__":
    main()
