"""Golden values for the coordinator's aggregation rules and server optimizers, from a NumPy
transcription of Flower's (flwr, framework/py/flwr/server/strategy/, Apache-2.0; Flower is not
installable here):

  - aggregate.py: aggregate (weighted mean by num_examples), aggregate_median (np.median over
    clients, coordinate-wise), _trim_mean / aggregate_trimmed_avg (cut int(beta * n) from each end
    per coordinate, then the mean, as scipy.stats.trim_mean), aggregate_krum (squared L2
    distances; each client's score is the sum of its n - f - 2 nearest distances; Krum returns the
    argmin's vector, MultiKrum the weighted mean of the `keep` lowest scores);
  - fedyogi.py: m = b1 m + (1 - b1) d; v = v - (1 - b2) d^2 sign(v - d^2); w += eta m / (sqrt(v) + tau),
    with Flower's defaults eta 1e-2, b1 0.9, b2 0.99, tau 1e-3, m and v starting at zero;
  - fedadagrad.py: m = d (b1 = 0); v = v + d^2; w += eta m / (sqrt(v) + tau), defaults eta 0.1,
    tau 1e-9.

Here d is the pseudo-gradient, the aggregated delta (Flower: aggregate - current weights; the
coordinator receives deltas, so that is the aggregate itself). Computed in float64 from
float32-representable inputs. Not a translation of webtune's TypeScript.

Run: /usr/bin/python3 scripts/make_aggregation_fixtures.py
Writes packages/coordinator/test/fixtures/aggregation.json.
"""
import json
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = "packages/coordinator/test/fixtures/aggregation.json"


def f32(a):
    return np.asarray(a, dtype=np.float32).astype(np.float64)


def weighted_mean(deltas, weights):
    total = sum(weights)
    return sum(d * w for d, w in zip(deltas, weights)) / total


def median(deltas):
    return np.median(np.asarray(deltas), axis=0)


def trimmed_mean(deltas, beta):
    array = np.asarray(deltas)
    n = array.shape[0]
    lowercut = int(beta * n)
    uppercut = n - lowercut
    part = np.partition(array, (lowercut, uppercut - 1), axis=0)
    return np.mean(part[lowercut:uppercut], axis=0)


def krum(deltas, weights, byzantine, keep):
    flat = np.asarray(deltas)
    n = len(flat)
    dist = np.array([[np.linalg.norm(flat[i] - flat[j]) ** 2 for j in range(n)] for i in range(n)])
    closest = max(1, n - byzantine - 2)
    scores = [np.sum(dist[i, np.argsort(dist[i])[1:closest + 1]]) for i in range(n)]
    if keep > 0:
        best = np.argsort(scores)[::-1][n - keep:]
        return weighted_mean([flat[i] for i in best], [weights[i] for i in best]), sorted(int(i) for i in best)
    best = int(np.argmin(scores))
    return flat[best], [best]


def fedyogi(global0, pseudo, eta=1e-2, b1=0.9, b2=0.99, tau=1e-3):
    w, m, v = global0.copy(), np.zeros_like(global0), np.zeros_like(global0)
    out = []
    for d in pseudo:
        m = b1 * m + (1 - b1) * d
        v = v - (1.0 - b2) * d * d * np.sign(v - d * d)
        w = w + eta * m / (np.sqrt(v) + tau)
        out.append(w.copy())
    return out


def fedadagrad(global0, pseudo, eta=1e-1, tau=1e-9):
    w, v = global0.copy(), np.zeros_like(global0)
    out = []
    for d in pseudo:
        m = d  # beta_1 = 0
        v = v + d * d
        w = w + eta * m / (np.sqrt(v) + tau)
        out.append(w.copy())
    return out


def main():
    rng = np.random.default_rng(20261205)
    n, dim = 10, 24
    honest = f32(rng.normal(0.02, 0.01, size=dim))
    deltas = [f32(honest + rng.normal(0, 0.004, size=dim)) for _ in range(7)]
    # Three attackers: sign-flipped and scaled, and one far off in another direction.
    deltas += [f32(-8 * honest), f32(-8 * honest + rng.normal(0, 0.004, size=dim)), f32(rng.normal(0.5, 0.1, size=dim))]
    weights = [int(x) for x in rng.integers(1, 20, size=n)]
    multikrum, kept = krum(deltas, weights, 3, 4)
    single, chosen = krum(deltas, weights, 3, 0)
    global0 = f32(rng.normal(0, 0.1, size=dim))
    pseudo = [f32(rng.normal(0, 0.05, size=dim)) for _ in range(4)]
    payload = {
        "deltas": [d.tolist() for d in deltas],
        "weights": weights,
        "honestMean": np.mean(np.asarray(deltas[:7]), axis=0).tolist(),
        "mean": weighted_mean(deltas, weights).tolist(),
        "median": median(deltas).tolist(),
        "median9": median(deltas[:9]).tolist(),
        "trimmedMean": {"beta": 0.3, "value": trimmed_mean(deltas, 0.3).tolist()},
        "krum": {"byzantine": 3, "keep": 0, "value": single.tolist(), "chosen": chosen},
        "multiKrum": {"byzantine": 3, "keep": 4, "value": multikrum.tolist(), "chosen": kept},
        "global0": global0.tolist(),
        "pseudoGradients": [p.tolist() for p in pseudo],
        "fedyogi": {"eta": 1e-2, "beta1": 0.9, "beta2": 0.99, "tau": 1e-3, "globals": [w.tolist() for w in fedyogi(global0, pseudo)]},
        "fedadagrad": {"eta": 1e-1, "tau": 1e-9, "globals": [w.tolist() for w in fedadagrad(global0, pseudo)]},
    }
    path = os.path.join(ROOT, OUT)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump({"generatedBy": f"scripts/make_aggregation_fixtures.py with numpy {np.__version__}; do not edit by hand", **payload}, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {OUT} ({os.path.getsize(path)} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
