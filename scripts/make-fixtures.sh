#!/bin/sh
# `npm run fixtures`: regenerates every committed fixture from its upstream implementation
# (Debian's python3-torch; run with /usr/bin/python3, which sees Debian's packages). Reruns give
# identical bytes. The last step trains adapters with webtune itself (Dawn in Node) and has
# PyTorch merge them: that pair is the cross-check, not a golden webtune computed for itself.
set -eu
cd "$(dirname "$0")"
PY=/usr/bin/python3
$PY make_matmul_fixtures.py
$PY make_nf4_fixtures.py
$PY make_lora_fixtures.py
$PY make_safetensors_fixtures.py
$PY make_transformer_op_fixtures.py
$PY make_attention_fixtures.py
$PY make_tiny_models.py
$PY make_chat_fixtures.py
$PY make_method_fixtures.py
$PY make_prompt_method_fixtures.py
$PY make_unipelt_fixtures.py
$PY make_vector_scale_fixtures.py
$PY make_pointwise_fixtures.py
$PY make_dora_fixtures.py
$PY make_dp_fixtures.py
$PY make_dp_sgd_fixtures.py
$PY make_aggregation_fixtures.py
$PY make_onnx_fixtures.py
cd ..
node scripts/run-ts.mjs scripts/export_webtune_adapters.ts
node scripts/run-ts.mjs scripts/export_method_adapters.ts
cd scripts
for model in tiny-llama tiny-gpt2; do
  $PY merge_peft_adapter.py "../packages/model/test/fixtures/models/$model" "../packages/model/test/fixtures/webtune-adapters/$model" \
    "../packages/model/test/fixtures/webtune-adapters/$model/pytorch-merged.json"
done
for model in tiny-llama tiny-gpt2; do
  for method in dora ia3 bitfit lora prompt-tuning p-tuning prefix-tuning bottleneck unipelt; do
    dir="../packages/model/test/fixtures/webtune-adapters/$model-$method"
    $PY check_method_adapter.py "$dir" "$model" "$dir/pytorch.json" >/dev/null
  done
done
