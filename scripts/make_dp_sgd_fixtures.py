#!/usr/bin/python3
"""Goldens for DP-SGD's per-example clipping (issue 19): the clipped, summed per-example gradients BEFORE noise, for
LoRA, DoRA, (IA)^3 and prefix tuning on the tiny Llama and the tiny GPT-2, f32.

Per-example gradients come from the plain-torch models (tiny_models.py, HF eager semantics) with PEFT's method
forwards (peft_methods.py; the adapters are built by the spec functions of make_method_fixtures.py and
make_prompt_method_fixtures.py, so their initial tensors are drawn the same way), looping over the examples one at a
time: example i is a window of seq + 1 tokens, inputs row[0:seq], targets row[1:seq+1], and its gradient is that of
its mean token cross-entropy (the model's loss on a batch of one row; dropout 0). This is what Opacus'
GradSampleModule gives with loss_reduction="mean" on equal-length rows (the batch-mean loss's backprops are multiplied
by the batch size, grad_sample_module.py), so the per-sample gradient is the per-example mean-loss gradient.

Clipping transcribes Opacus' DPOptimizer.clip_and_accumulate (pytorch/opacus, opacus/optimizers/optimizer.py, read at
commit 2d4ea8c439657f1d96c42513bccb724ed37f9987):
    per_param_norms = [g.view(len(g), -1).norm(2, dim=-1) for g in grad_samples]
    per_sample_norms = torch.stack(per_param_norms, dim=1).norm(2, dim=1)
    per_sample_clip_factor = (max_grad_norm / (per_sample_norms + 1e-6)).clamp(max=1.0)
    summed_grad = torch.einsum("i,i...", per_sample_clip_factor, grad_sample)   # per parameter
i.e. one L2 norm per example over ALL trainable tensors together, factor min(1, C / (norm + 1e-6)). The clipping stage
runs in float64 on the f32 per-example gradients (the stored values are the exact result rounded to f32).

C is the midpoint of the widest gap between consecutive sorted per-example norms, rounded to 4 significant digits and
then to the nearest f32 (so a GPU holding C in f32 holds exactly the reference's C): the examples below the gap pass
unclipped, those above it are scaled down, and both groups are non-empty. The script asserts that every norm is at
least 1% away from C, so f32 rounding cannot flip which side an example is on.

Writes packages/trainer/test/fixtures/dp-sgd-{tiny-llama,tiny-gpt2}.json:
  {generatedBy, model, notes, seq, rows [[seq + 1 token ids] x 4], variants: [
     {name, method: lora | dora | ia3 | prefix-tuning, config (adapter_config.json fields as PEFT writes them),
      tensors {PEFT key: f32} (the adapter's initial tensors), losses [4] (each example's mean token CE),
      perExample [{key: f32} x 4] (each example's unclipped gradient), norms [4] (per-example L2 norm over every
      tensor, float64 values), maxGradNorm C, clipFactors [4], clipped {key: f32} (sum of clip factor x gradient),
      unclippedSum {key: f32} (the plain sum: what C = 1e9 gives), reset {rows [indices], norms, clipped}
      (a second accumulation over those rows alone, same C)}]}
Keys are those of the adapter's trainable tensors (PEFT's saved keys for LoRA / DoRA / IA3,
prompt_encoder.embedding.weight for prefix tuning), the same keys as the method goldens' `grads`.

Checks on every generation (assert, then discarded): central finite differences in float64 of example 0's gradient
(the largest-|grad| entry of every tensor and one random entry; make_method_fixtures.py's and
make_prompt_method_fixtures.py's finite_difference_check, their step and tolerance); the sum of the per-example
gradients equals N times the gradient of the batched forward's mean loss (all rows together, equal lengths: the
per-example loop and the batch agree); both sides of C are populated; Opacus' f32 pipeline (the ops above in float32
on the stacked per-sample gradients) agrees with the float64 result to 1e-6 relative.

Run: cd scripts && /usr/bin/python3 make_dp_sgd_fixtures.py
"""
import torch
import torch.nn.functional as F

from fixture_io import b64, write_fixture
import make_method_fixtures
import make_prompt_method_fixtures
from make_method_fixtures import DORA_TARGETS, LORA_DEFAULT, dora_spec, ia3_spec, load, lora_spec
from make_prompt_method_fixtures import prefix_spec
from peft_methods import IA3_DEFAULTS
from tiny_models import CausalLM

OUT = "packages/trainer/test/fixtures"
GEN = "scripts/make_dp_sgd_fixtures.py"
MODELS = [("tiny-llama", 9101), ("tiny-gpt2", 9103)]
N, SEQ = 4, 16
STABILITY = 1e-6  # Opacus: max_grad_norm / (per_sample_norms + 1e-6)
NOTES = {
    "rows": "Each row is seq + 1 token ids: inputs row[0:seq], targets row[1:seq+1] (a TrainingRow window). Token "
            "ids are uniform in [0, vocab) from torch.Generator().manual_seed(model seed).",
    "loss": "Example i's loss is its mean token cross-entropy over the seq targets (a batch of one row); its gradient "
            "is perExample[i]. No dropout.",
    "clipping": "Opacus clip_and_accumulate: norms[i] = sqrt(sum over every trainable tensor of sum g_i^2); "
                "clipFactors[i] = min(1, C / (norms[i] + 1e-6)); clipped = sum_i clipFactors[i] * perExample[i]. "
                "No noise, no division by the batch size.",
    "C": "maxGradNorm: midpoint of the widest gap between consecutive sorted norms, 4 significant digits, then the "
         "nearest f32: some examples are clipped, some are not; every norm is at least 1% away from C.",
    "unclippedSum": "sum_i perExample[i]: what a clipper with C = 1e9 accumulates (every factor is 1).",
    "reset": "After reset(), an accumulation over rows[reset.rows] only (in that order): its norms and clipped sum.",
    "lora": "LoRA r 4, alpha 8 on PEFT's default targets (q_proj, v_proj; GPT-2 c_attn), every layer. A ~ "
            "U(+-1/sqrt(in)), B ~ N(0, 0.05^2) (nonzero, so A has a gradient too).",
    "dora": "DoRA r 4, alpha 8 on q_proj, v_proj, down_proj (GPT-2 c_attn, mlp.c_proj); A, B as LoRA; magnitude "
            "m = ||W + s B A|| per row times (1 + 0.1 N(0,1)). The weight norm is detached (PEFT).",
    "ia3": "(IA)^3 on PEFT's default targets for the model type (llama k_proj, v_proj, down_proj with down_proj "
           "feed-forward; gpt2 c_attn, mlp.c_proj with mlp.c_proj feed-forward); l = 1 + 0.3 N(0,1).",
    "prefix-tuning": "Prefix tuning without projection, 4 virtual tokens: prompt_encoder.embedding.weight "
                     "[4, L*2*td] ~ N(0,1) (make_prompt_method_fixtures.py's column layout and GQA rule).",
}


def gen(seed):
    return torch.Generator().manual_seed(seed)


def specs(model, name, seed):
    t = model.type
    return [
        lora_spec(model, "lora", LORA_DEFAULT[t], None, gen(seed + 1)),
        dora_spec(model, "dora", DORA_TARGETS[t], None, gen(seed + 2)),
        ia3_spec(model, "ia3", *IA3_DEFAULTS[t], gen(seed + 3)),
        prefix_spec(model, name, "prefix-tuning", 4, False, gen(seed + 4)),
    ]


def example_loss(logits, row):
    """Mean token cross-entropy of one row: logits [1, seq, V] for inputs row[:-1], targets row[1:]."""
    return F.cross_entropy(logits[0].float(), row[1:], reduction="mean")


def per_example(spec, model, rows):
    """[(loss, {key: grad})] for each row on its own, from the spec's initial tensors."""
    out = []
    for row in rows:
        tv = {k: v.clone().requires_grad_() for k, v in spec["init"].items()}
        loss = example_loss(spec["build"](model.p, tv).forward(row[None, :-1]), row)
        loss.backward()
        grads = {k: v.grad.detach().clone() for k, v in tv.items()}
        assert all(torch.isfinite(g).all() and g.abs().max() > 0 for g in grads.values()), spec["name"]
        out.append((float(loss), grads))
    return out


def batched_grads(spec, model, rows):
    """Gradient of the mean loss over all tokens of all rows, one batched forward."""
    tv = {k: v.clone().requires_grad_() for k, v in spec["init"].items()}
    logits = spec["build"](model.p, tv).forward(rows[:, :-1])
    loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), rows[:, 1:].reshape(-1), reduction="mean")
    loss.backward()
    return {k: v.grad.detach().clone() for k, v in tv.items()}


def clip_and_accumulate(grad_samples, max_grad_norm):
    """Opacus DPOptimizer.clip_and_accumulate on {key: [n, ...]} per-sample gradients. Returns (summed {key: tensor},
    per-sample norms [n], clip factors [n]) in the gradients' dtype."""
    per_param_norms = [g.view(len(g), -1).norm(2, dim=-1) for g in grad_samples.values()]
    per_sample_norms = torch.stack(per_param_norms, dim=1).norm(2, dim=1)
    per_sample_clip_factor = (max_grad_norm / (per_sample_norms + STABILITY)).clamp(max=1.0)
    summed = {k: torch.einsum("i,i...", per_sample_clip_factor, g) for k, g in grad_samples.items()}
    return summed, per_sample_norms, per_sample_clip_factor


def relative(a, b):
    return float((a - b).abs().max() / b.abs().max())


def round_sig(x, digits=4):
    return float(f"{x:.{digits - 1}e}")


def variant(spec, model, rows):
    examples = per_example(spec, model, rows)
    keys = list(spec["init"])
    samples64 = {k: torch.stack([g[k] for _, g in examples]).double() for k in keys}

    # Finite differences (float64) of example 0's gradient, with the method generators' own checks: their loss on
    # ids = labels = the whole row of seq + 1 tokens is this row's loss (causal: the first seq logits are those of
    # row[:-1]; the last is dropped by the shift).
    generator = make_prompt_method_fixtures if spec["method"] == "prefix-tuning" else make_method_fixtures
    fd = generator.finite_difference_check
    fd_err = fd(spec, model, rows[0][None], rows[0][None], spec["init"], examples[0][1], gen(len(keys)))

    # The per-example loop against one batched backward: sum_i g_i = N * grad(mean loss over the batch).
    batched = batched_grads(spec, model, rows)
    for k in keys:
        err = relative(samples64[k].sum(0), len(rows) * batched[k].double())
        assert err < 1e-5, (spec["name"], k, err)

    _, norms, _ = clip_and_accumulate(samples64, float("inf"))
    ordered = sorted(norms.tolist())
    gap = max(range(len(ordered) - 1), key=lambda i: ordered[i + 1] - ordered[i])
    c = float(torch.tensor(round_sig((ordered[gap] + ordered[gap + 1]) / 2), dtype=torch.float32))  # an f32 exactly
    assert all(abs(n - c) > 0.01 * c for n in ordered), (spec["name"], ordered, c)
    clipped, norms, factors = clip_and_accumulate(samples64, c)
    assert int((factors < 1).sum()) == len(rows) - 1 - gap and int((factors == 1).sum()) == gap + 1, factors

    # Opacus' own dtype (f32 throughout) agrees with the float64 clipping stage.
    samples32 = {k: torch.stack([g[k] for _, g in examples]) for k in keys}
    clipped32, norms32, _ = clip_and_accumulate(samples32, c)
    assert relative(norms32.double(), norms) < 1e-6, (spec["name"], norms32, norms)
    for k in keys:
        assert relative(clipped32[k].double(), clipped[k]) < 1e-6, (spec["name"], k)

    unclipped, _, ones = clip_and_accumulate(samples64, 1e9)
    assert bool((ones == 1).all())
    for k in keys:
        assert torch.equal(unclipped[k], samples64[k].sum(0)), k

    # After reset: rows 3 and 0 alone, same C.
    reset_rows = [3, 0]
    sub = {k: v[reset_rows] for k, v in samples64.items()}
    reset_clipped, reset_norms, _ = clip_and_accumulate(sub, c)

    print(f"  {spec['name']:14s} tensors {len(keys):2d}  fd err {fd_err:.1e}  "
          f"losses {[round(l, 4) for l, _ in examples]}  "
          f"norms {[round(n, 5) for n in norms.tolist()]}  C {c}  factors {[round(f, 4) for f in factors.tolist()]}")
    return {"name": spec["name"], "method": spec["method"], "config": spec["config"],
            "tensors": {k: b64(v, "f32") for k, v in spec["init"].items()},
            "losses": [l for l, _ in examples],
            "perExample": [{k: b64(g[k], "f32") for k in keys} for _, g in examples],
            "norms": norms.tolist(), "maxGradNorm": c, "clipFactors": factors.tolist(),
            "clipped": {k: b64(v, "f32") for k, v in clipped.items()},
            "unclippedSum": {k: b64(v, "f32") for k, v in unclipped.items()},
            "reset": {"rows": reset_rows, "norms": reset_norms.tolist(),
                      "clipped": {k: b64(v, "f32") for k, v in reset_clipped.items()}}}


def main():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    for name, seed in MODELS:
        config, params, _, _ = load(name)
        model = CausalLM(config, params)
        vocab = model.lm_head_weight().shape[0]
        rows = torch.randint(0, vocab, (N, SEQ + 1), generator=gen(seed))
        print(name)
        variants = [variant(spec, model, rows) for spec in specs(model, name, seed * 10)]
        write_fixture(f"{OUT}/dp-sgd-{name}.json", GEN, {
            "model": name, "notes": NOTES, "seq": SEQ, "rows": rows.tolist(), "variants": variants})


if __name__ == "__main__":
    main()
