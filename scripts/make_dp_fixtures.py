"""DP accounting golden values from an independent Python implementation of the RDP accountant of
the sampled Gaussian mechanism (SGM), written from the formulas of:

  - Mironov, Talwar, Zhang, "Renyi Differential Privacy of the Sampled Gaussian Mechanism"
    (arXiv 1908.10530), section 3.3: A_alpha for integer alpha as a binomial sum, for fractional
    alpha as two series split at z0 = sigma^2 ln(1/q - 1) + 1/2, using erfc;
  - Balle et al., "Hypothesis testing interpretations and Renyi differential privacy" (AISTATS
    2020, Theorem 21): eps = rdp - (ln delta + ln alpha)/(alpha - 1) + ln((alpha - 1)/alpha),
    minimised over the orders (NaNs ignored, as Opacus' get_privacy_spent);
  - the conventions of Opacus' accountants (q = 0 -> 0, sigma = 0 -> inf, q = 1 -> alpha/(2 sigma^2),
    default orders [1 + x/10 for x in 1..99] + [12..63], the series cut once both terms < e^-30).

Not a translation of webtune's TypeScript: erfc comes from scipy.special.log_ndtr, sums are
scipy.special.logsumexp with signs, and a few log(A_alpha) are also computed by mpmath quadrature of
the definition A_alpha = E_{z~N(0,sigma^2)}[((1-q) + q exp((2z-1)/(2 sigma^2)))^alpha] at 40
digits (the check TF Privacy's rdp_accountant_test makes), independent of both series.

Also asserts the values published in Opacus' and TF Privacy's own tests (quoted below with their
tolerances) and writes them into the fixture.

Also transcribes Opacus' get_noise_multiplier (opacus/accountants/utils.py: sigma_high doubles from
10 while eps > target, failing past MAX_SIGMA = 1e6; then bisection until target - eps_high <=
epsilon_tolerance; returns sigma_high) over this accountant, checks it against the values in
Opacus' own tests (opacus/tests/accountants_test.py), and records sigma for a table of targets.

Run: /usr/bin/python3 scripts/make_dp_fixtures.py
Writes packages/trainer/test/fixtures/dp.json and packages/trainer/test/fixtures/noise-multiplier.json.
"""
import math

import mpmath
import numpy as np
from scipy import special

from fixture_io import write_fixture

ORDERS = [1 + x / 10.0 for x in range(1, 100)] + [float(a) for a in range(12, 64)]
CUTOFF = -30.0  # stop the fractional series once both new terms are below e^-30


def log_erfc(x):
    """ln erfc(x) = ln 2 + ln Phi(-x sqrt 2), stable for large x."""
    return math.log(2.0) + float(special.log_ndtr(-x * math.sqrt(2.0)))


def log_a_integer(q, sigma, alpha):
    """ln A_alpha = ln sum_{k=0}^{alpha} C(alpha, k) q^k (1-q)^(alpha-k) exp((k^2 - k) / (2 sigma^2))."""
    n = int(alpha)
    k = np.arange(n + 1, dtype=np.float64)
    log_terms = (np.log(special.binom(n, k)) + k * math.log(q) + (n - k) * math.log1p(-q)
                 + (k * k - k) / (2.0 * sigma * sigma))
    return float(special.logsumexp(log_terms))


def log_a_fractional(q, sigma, alpha):
    """ln A_alpha for fractional alpha: A = A0 + A1, the integrals below and above z0, each a series
    over k of C(alpha, k) (signs alternate once k > alpha) times a Gaussian tail."""
    z0 = sigma * sigma * math.log(1.0 / q - 1.0) + 0.5
    s2 = math.sqrt(2.0) * sigma
    terms0, terms1, signs = [], [], []
    k = 0
    while True:
        c = float(special.binom(alpha, k))
        log_c = math.log(abs(c))
        j = alpha - k
        t0 = (log_c + k * math.log(q) + j * math.log1p(-q) + (k * k - k) / (2 * sigma * sigma)
              + math.log(0.5) + log_erfc((k - z0) / s2))
        t1 = (log_c + j * math.log(q) + k * math.log1p(-q) + (j * j - j) / (2 * sigma * sigma)
              + math.log(0.5) + log_erfc((z0 - j) / s2))
        terms0.append(t0)
        terms1.append(t1)
        signs.append(1.0 if c > 0 else -1.0)
        k += 1
        if max(t0, t1) < CUTOFF:
            break
    a0, sign0 = special.logsumexp(terms0, b=signs, return_sign=True)
    a1, sign1 = special.logsumexp(terms1, b=signs, return_sign=True)
    assert sign0 > 0 and sign1 > 0, (q, sigma, alpha)
    return float(np.logaddexp(a0, a1))


def rdp_one(q, sigma, alpha):
    if q == 0:
        return 0.0
    if sigma == 0:
        return math.inf
    if q == 1:
        return alpha / (2 * sigma * sigma)
    if math.isinf(alpha):
        return math.inf
    log_a = log_a_integer(q, sigma, alpha) if float(alpha).is_integer() else log_a_fractional(q, sigma, alpha)
    return log_a / (alpha - 1)


def rdp(q, sigma, steps, orders=ORDERS):
    return np.array([rdp_one(q, sigma, a) for a in orders]) * steps


def epsilon(orders, rdp_vec, delta):
    """Balle et al. 2020 conversion; returns (eps, order, relative gap to the runner-up order)."""
    a = np.asarray(orders, dtype=np.float64)
    r = np.asarray(rdp_vec, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        eps = r - (np.log(delta) + np.log(a)) / (a - 1) + np.log((a - 1) / a)
    if np.isnan(eps).all():
        return math.inf, math.nan, math.inf
    i = int(np.nanargmin(eps))
    rest = np.delete(eps, i)
    rest = rest[~np.isnan(rest)]
    gap = float((np.min(rest) - eps[i]) / abs(eps[i])) if rest.size and np.isfinite(eps[i]) else math.inf
    return float(eps[i]), float(a[i]), gap


def log_a_quadrature(q, sigma, alpha):
    """ln A_alpha by adaptive quadrature of the definition, 40 digits (TF Privacy's test approach)."""
    mpmath.mp.dps = 40
    q, sigma, alpha = mpmath.mpf(q), mpmath.mpf(sigma), mpmath.mpf(alpha)

    def f(z):
        mu0 = mpmath.npdf(z, 0, sigma)
        ratio = (1 - q) + q * mpmath.exp((2 * z - 1) / (2 * sigma ** 2))
        return mu0 * ratio ** alpha

    # Split at 0, 1/2, 1 and around alpha (for q -> 1 the integrand tends to a Gaussian at alpha) so
    # the peak of the integrand is resolved.
    peak = alpha
    pts = [-mpmath.inf, -10 * sigma, 0, mpmath.mpf(0.5), 1, peak, peak + 10 * sigma, mpmath.inf]
    pts = sorted(set(pts), key=lambda p: float(p))
    val = mpmath.quad(f, pts, maxdegree=10)
    return float(mpmath.log(val))


MAX_SIGMA = 1e6  # opacus/accountants/utils.py


def get_noise_multiplier(target_epsilon, target_delta, sample_rate, steps, epsilon_tolerance=0.01, orders=ORDERS):
    """Opacus' get_noise_multiplier with its RDP accountant, by steps; `orders` is what Opacus passes
    through **kwargs to RDPAccountant.get_epsilon as `alphas` (default: its DEFAULT_ALPHAS). Also returns
    how close any epsilon met along the way came to the target (relative): the bisection's branches
    are comparisons with the target, so a TypeScript port follows the same path, to the bit, when
    no epsilon is within float64 noise of it."""
    closest = math.inf

    def eps_at(sigma):
        nonlocal closest
        e, _, _ = epsilon(orders, rdp(sample_rate, sigma, steps, orders), target_delta)
        closest = min(closest, abs(e - target_epsilon) / target_epsilon)
        return e

    eps_high = math.inf
    sigma_low, sigma_high = 0, 10
    while eps_high > target_epsilon:
        sigma_high = 2 * sigma_high
        eps_high = eps_at(sigma_high)
        if sigma_high > MAX_SIGMA:
            raise ValueError("The privacy budget is too low.")
    while target_epsilon - eps_high > epsilon_tolerance:
        sigma = (sigma_low + sigma_high) / 2
        eps = eps_at(sigma)
        if eps < target_epsilon:
            sigma_high = sigma
            eps_high = eps
        else:
            sigma_low = sigma
    return float(sigma_high), float(eps_high), closest


# With the default orders (up to 63) no sigma reaches epsilon 0.1 at delta 1e-5: rdp >= 0, so
# epsilon >= min over alpha of -(ln delta + ln alpha)/(alpha - 1) + ln((alpha - 1)/alpha), 0.103 at
# alpha 63. TF Privacy's accountant adds the orders 128, 256 and 512 for such targets.
EXTENDED_ORDERS = ORDERS + [128.0, 256.0, 512.0]


def noise_multiplier_payload():
    cases = []
    # A spread of targets, deltas, sampling rates and lengths (the TS test covers a wider table by
    # property; these pin sigma itself). Epsilon 0.1 needs the extended orders.
    for (eps_t, delta, q, steps, orders) in [(0.1, 1e-5, 0.001, 100, EXTENDED_ORDERS), (0.1, 1e-6, 0.01, 100, EXTENDED_ORDERS)]:
        sigma, eps, closest = get_noise_multiplier(eps_t, delta, q, steps, orders=orders)
        assert eps <= eps_t and eps_t - eps <= 0.01, (eps_t, delta, q, steps, sigma, eps)
        assert closest > 1e-9, (eps_t, delta, q, steps, closest)
        cases.append({"targetEpsilon": eps_t, "delta": delta, "sampleRate": q, "steps": steps, "orders": orders,
                      "sigma": sigma, "epsilon": eps, "closest": closest})
    for (eps_t, delta, q, steps) in [(1.0, 1e-5, 0.01, 1000),
                                     (1.0, 1e-6, 0.1, 100), (3.0, 1e-5, 0.01, 1000), (3.0, 1e-6, 0.001, 10000),
                                     (8.0, 1e-5, 0.1, 1000), (8.0, 1e-6, 0.01, 10000), (10.0, 1e-6, 0.1, 100),
                                     (10.0, 1e-5, 0.001, 10000), (1.0, 1e-5, 1.0, 100), (3.0, 1e-5, 0.05, 300)]:
        sigma, eps, closest = get_noise_multiplier(eps_t, delta, q, steps)
        assert eps <= eps_t and eps_t - eps <= 0.01, (eps_t, delta, q, steps, sigma, eps)
        # Relative distance from the target of every epsilon on the path: far above the ~1e-12 at
        # which the TS and Python accountants differ, so both take the same branches.
        assert closest > 1e-9, (eps_t, delta, q, steps, closest)
        cases.append({"targetEpsilon": eps_t, "delta": delta, "sampleRate": q, "steps": steps, "orders": None,
                      "sigma": sigma, "epsilon": eps, "closest": closest})
    # Opacus' own tests (opacus/tests/accountants_test.py, RDP accountant, assertAlmostEqual to
    # 4 places): test_get_noise_multiplier_rdp_steps and test_get_noise_multiplier_rdp_epochs
    # (epochs 90 at q 0.04 -> int(90 / 0.04) = 2250 steps).
    published = []
    for (source, steps, want) in [("opacus/tests/accountants_test.py test_get_noise_multiplier_rdp_steps", 2000, 1.3562),
                                  ("opacus/tests/accountants_test.py test_get_noise_multiplier_rdp_epochs", int(90 / 0.04), 1.416)]:
        sigma, _, _ = get_noise_multiplier(8.0, 1e-5, 0.04, steps)
        assert round(sigma - want, 4) == 0, (source, sigma, want)
        published.append({"source": source, "targetEpsilon": 8.0, "delta": 1e-5, "sampleRate": 0.04, "steps": steps,
                          "sigma": want, "absTol": 5e-5})
    # Out of reach: Opacus raises "The privacy budget is too low." once sigma_high passes 1e6 (the
    # first: sigma 1e6 would do, but the doubling never tries it; the other two: below the orders'
    # floor, no sigma would do).
    too_low = []
    for (eps_t, delta, q, steps) in [(1e-4, 1e-5, 1.0, 1000), (0.1, 1e-5, 0.001, 100), (0.1, 1e-6, 0.01, 100)]:
        try:
            get_noise_multiplier(eps_t, delta, q, steps)
        except ValueError:
            too_low.append({"targetEpsilon": eps_t, "delta": delta, "sampleRate": q, "steps": steps})
        else:
            raise AssertionError("expected the budget to be out of reach")
    return {"maxSigma": MAX_SIGMA, "epsilonTolerance": 0.01, "cases": cases, "published": published, "tooLow": too_low}


def finite_or_none(values):
    return [None if math.isinf(v) else float(v) for v in values]


def main():
    payload = {"orders": ORDERS}

    # --- grid of (q, sigma, steps, delta) -> (eps, best order) with the default orders ---
    grid = []
    rdp_cache = {}
    for q in [0.001, 0.01, 0.05, 0.2, 1.0]:
        for sigma in [0.5, 0.8, 1.0, 1.5, 4.0]:
            base = rdp(q, sigma, 1)
            rdp_cache[(q, sigma)] = base
            for steps in [1, 10, 100, 1000]:
                for delta in [1e-5, 1e-6]:
                    eps, order, gap = epsilon(ORDERS, base * steps, delta)
                    grid.append({"q": q, "sigma": sigma, "steps": steps, "delta": delta,
                                 "epsilon": eps, "order": order, "gap": gap})
    payload["grid"] = grid

    # --- raw RDP vectors (per single step) for a few cases, default orders ---
    payload["rdpVectors"] = [
        {"q": q, "sigma": s, "steps": t, "rdp": finite_or_none(rdp(q, s, t))}
        for (q, s, t) in [(0.001, 1.0, 1), (0.01, 0.8, 7), (0.05, 4.0, 1), (0.2, 0.5, 3), (0.5, 1.1, 2),
                          (0.99, 2.0, 1), (1.0, 1.5, 5),
                          # tiny sigma: ln A in the thousands, the log-space subtraction overflows exp
                          (0.5, 0.1, 1), (0.2, 0.05, 1)]
    ]

    # --- ln erfc at points spanning both tails, by mpmath at 40 digits (scipy's log_ndtr, used by
    # the series above, is ~5e-17 off in absolute terms near 0, too coarse for a 1e-13 relative check) ---
    xs = [-30.0, -6.0, -3.0, -1.5, -0.7, -0.3, -1e-3, 0.0, 1e-8, 0.1, 0.4, 0.5, 0.9, 1.0, 1.7, 2.0,
          2.5, 3.0, 4.0, 5.0, 6.5, 9.0, 12.0, 20.0, 26.0, 27.5, 40.0, 100.0, 1e3, 1e5]
    mpmath.mp.dps = 40
    log_erfc_mp = [float(mpmath.log(mpmath.erfc(mpmath.mpf(x)))) for x in xs]
    for x, v in zip(xs, log_erfc_mp):
        assert abs(log_erfc(x) - v) <= 1e-12 * abs(v) + 1e-16, (x, log_erfc(x), v)
    payload["logErfc"] = [{"x": x, "value": v} for x, v in zip(xs, log_erfc_mp)]

    # --- ln A_alpha by quadrature vs the series (independent check of the series themselves) ---
    exact = []
    for (q, s, a) in [(0.01, 1.0, 2.5), (0.01, 1.0, 7.0), (0.05, 0.8, 1.3), (0.05, 0.8, 4.0),
                      (0.2, 1.5, 3.7), (0.001, 0.5, 1.1), (0.1, 2.0, 20.5), (1e-4, 1.0, 1.5),
                      (1e-3, 1.0, 2.0), (0.01, 10.0, 20.0), (0.1, 100.0, 20.5)]:
        la = log_a_quadrature(q, s, a)
        series = log_a_integer(q, s, a) if float(a).is_integer() else log_a_fractional(q, s, a)
        # Series truncated once terms < e^-30: absolute error up to ~1e-13.
        assert abs(series - la) <= 1e-9 * abs(la) + 1e-12, (q, s, a, series, la)
        exact.append({"q": q, "sigma": s, "alpha": a, "logA": la})
    payload["logAQuadrature"] = exact

    # --- heterogeneous releases (Opacus RDPAccountant history), summed per order ---
    rounds = [{"noiseMultiplier": 1.0, "sampleRate": 0.01, "steps": 50},
              {"noiseMultiplier": 1.0, "sampleRate": 0.01, "steps": 30},
              {"noiseMultiplier": 0.8, "sampleRate": 0.05, "steps": 10},
              {"noiseMultiplier": 2.0, "sampleRate": 0.2, "steps": 1},
              {"noiseMultiplier": 1.3, "sampleRate": 0.001, "steps": 400}]
    total = sum(rdp(r["sampleRate"], r["noiseMultiplier"], r["steps"]) for r in rounds)
    het = {"rounds": rounds, "rdp": finite_or_none(total), "results": []}
    for delta in [1e-5, 1e-6]:
        eps, order, gap = epsilon(ORDERS, total, delta)
        het["results"].append({"delta": delta, "epsilon": eps, "order": order, "gap": gap})
    payload["heterogeneous"] = het

    # --- values published in Opacus' and TF Privacy's own tests ---
    published = []
    # Opacus opacus/tests/accountants_test.py test_rdp_accountant: RDPAccountant, sigma 1.5,
    # q 0.04, int(90 / 0.04) steps, delta 1e-5 -> assertAlmostEqual(eps, 7.32911117143) (7 places).
    steps = int(90 / 0.04)
    e, _, _ = epsilon(ORDERS, rdp(0.04, 1.5, steps), 1e-5)
    assert abs(e - 7.32911117143) < 5e-8, e
    published.append({"source": "opacus/tests/accountants_test.py test_rdp_accountant", "kind": "epsilon",
                      "q": 0.04, "sigma": 1.5, "steps": steps, "delta": 1e-5, "orders": None,
                      "epsilon": 7.32911117143, "absTol": 5e-8})
    # Opacus opacus/accountants/analysis/rdp.py module docstring: [(1e-5, 1.0, 10), (1e-4, 3.0, 4)],
    # orders range(2, 33), delta 1e-5 -> (0.336, 23) (doctest +NUMBER: 3 decimals).
    o = [float(a) for a in range(2, 33)]
    r = rdp(1e-5, 1.0, 10, o) + rdp(1e-4, 3.0, 4, o)
    e, order, _ = epsilon(o, r, 1e-5)
    assert abs(e - 0.336) < 5e-4 and order == 23, (e, order)
    published.append({"source": "opacus/accountants/analysis/rdp.py docstring", "kind": "composed",
                      "parts": [[1e-5, 1.0, 10], [1e-4, 3.0, 4]], "orders": o, "delta": 1e-5,
                      "epsilon": 0.336, "order": 23, "absTol": 5e-4})
    # TF Privacy rdp_accountant_test.py (same compute_rdp as Opacus):
    # test_compute_rdp_no_data / no_sampling: compute_rdp(0, 10, 1, 20) == 0, (1, 10, 1, 20) == 0.1.
    assert rdp_one(0, 10, 20) == 0 and rdp_one(1, 10, 20) == 0.1
    published.append({"source": "tensorflow_privacy rdp_accountant_test test_compute_rdp_no_data", "kind": "rdp",
                      "q": 0, "sigma": 10, "steps": 1, "orders": [20], "rdp": [0], "absTol": 0})
    published.append({"source": "tensorflow_privacy rdp_accountant_test test_compute_rdp_no_sampling", "kind": "rdp",
                      "q": 1, "sigma": 10, "steps": 1, "orders": [20], "rdp": [0.1], "absTol": 0})
    # test_compute_rdp_scalar: compute_rdp(0.1, 2, 10, 5) ~ 0.07737 (5 places).
    v = rdp(0.1, 2, 10, [5.0])[0]
    assert abs(v - 0.07737) < 5e-6, v
    published.append({"source": "tensorflow_privacy rdp_accountant_test test_compute_rdp_scalar", "kind": "rdp",
                      "q": 0.1, "sigma": 2, "steps": 10, "orders": [5], "rdp": [0.07737], "absTol": 5e-6})
    # test_compute_rdp_sequence: compute_rdp(0.01, 2.5, 50, [1.5, 2.5, 5, 50, 100, inf]) ~
    # [0.00065, 0.001085, 0.00218075, 0.023846, 167.416307, inf] (delta 1e-5).
    o = [1.5, 2.5, 5.0, 50.0, 100.0, math.inf]
    want = [0.00065, 0.001085, 0.00218075, 0.023846, 167.416307, math.inf]
    got = rdp(0.01, 2.5, 50, o)
    assert all((g == w) if math.isinf(w) else abs(g - w) <= 1e-5 for g, w in zip(got, want)), got
    published.append({"source": "tensorflow_privacy rdp_accountant_test test_compute_rdp_sequence", "kind": "rdp",
                      "q": 0.01, "sigma": 2.5, "steps": 50, "orders": finite_or_none(o), "rdp": finite_or_none(want),
                      "absTol": 1e-5})
    # test_compute_log_a_equals_mp parameters (log A vs multi-precision quadrature, rtol 1e-4):
    # check ours against our own quadrature for the ones our quadrature resolves quickly; the
    # TS test compares its log A with these at rtol 1e-4 as TF Privacy does.
    mp_cases = []
    for (q, s, a) in [(1e-4, 1.0, 1.5), (1e-3, 1.0, 2.0), (0.01, 10.0, 20.0), (0.1, 100.0, 20.5),
                      (1e-6, 1.0, 27.0)]:
        la = log_a_quadrature(q, s, a)
        series = log_a_integer(q, s, a) if float(a).is_integer() else log_a_fractional(q, s, a)
        assert abs(series - la) <= 1e-4 * abs(la), (q, s, a, series, la)
        mp_cases.append({"q": q, "sigma": s, "alpha": a, "logA": la})
    published.append({"source": "tensorflow_privacy rdp_accountant_test test_compute_log_a_equals_mp "
                      "(parameters; reference by our mpmath quadrature)", "kind": "logA", "cases": mp_cases,
                      "relTol": 1e-4})
    # test_get_privacy_spent_check_target_delta: orders range(2, 33), constant rdp 1.1 (pure DP),
    # delta 1e-5 -> opt order 32, eps 1.32783806176 (7 places; TF's compute_eps is the same Balle
    # et al. conversion).
    o = [float(a) for a in range(2, 33)]
    e, order, _ = epsilon(o, [1.1] * len(o), 1e-5)
    assert order == 32 and abs(e - 1.32783806176) < 5e-8, (e, order)
    published.append({"source": "tensorflow_privacy rdp_accountant_test test_get_privacy_spent_check_target_delta",
                      "kind": "convert", "orders": o, "rdp": [1.1] * len(o), "delta": 1e-5,
                      "epsilon": 1.32783806176, "order": 32, "absTol": 5e-8})
    # Same test, second half: q = 1, sigma 4.530877117, orders 0.001 i for i in 1000..99999 (we
    # start at 1001: order 1 is outside the conversion's domain, TF maps it to inf), delta 1e-6 ->
    # eps 1 (7 places): the scale is chosen to give exactly (1, 1e-6)-DP.
    o = [0.001 * i for i in range(1001, 100000)]
    e, _, _ = epsilon(o, rdp(1.0, 4.530877117, 1, o), 1e-6)
    assert abs(e - 1.0) < 5e-8, e
    published.append({"source": "tensorflow_privacy rdp_accountant_test test_get_privacy_spent_check_target_delta "
                      "(Gaussian half)", "kind": "epsilon", "q": 1.0, "sigma": 4.530877117, "steps": 1,
                      "delta": 1e-6, "orders": None, "ordersRange": [1001, 100000, 0.001],
                      "epsilon": 1.0, "absTol": 5e-8})
    payload["published"] = published

    write_fixture("packages/trainer/test/fixtures/dp.json", "scripts/make_dp_fixtures.py", payload)
    write_fixture("packages/trainer/test/fixtures/noise-multiplier.json", "scripts/make_dp_fixtures.py",
                  noise_multiplier_payload())


if __name__ == "__main__":
    main()
