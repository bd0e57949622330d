"""Theorem 1 (supplement A): dQ̃/dΣ_ii = ½ d²Q̃/da_i² for Q̃(a) = E_{ã~N(a,Σ)} Q(ã), Σ diagonal.

Q̃ is computed by Gauss-Hermite quadrature of a non-quadratic Q, and both sides by central
finite differences of that quadrature, so neither side relies on the identity.
"""

import numpy as np
import pytest


def q_function(a1, a2):
    """A non-quadratic, non-separable Q(a) on R²."""
    return np.sin(1.3 * a1) * np.cos(0.7 * a2) + 0.2 * a1**3 * a2 + np.log1p(np.exp(a2 - a1))


NODES, WEIGHTS = np.polynomial.hermite_e.hermegauss(60)  # ∫ f(x) exp(-x²/2) dx
WEIGHTS = WEIGHTS / np.sqrt(2 * np.pi)  # now E_{x~N(0,1)} f(x) = Σ w f(x)


def smoothed_q(a, variances):
    """Q̃(a) = E_{ã~N(a, diag(variances))} Q(ã) by tensor-product quadrature."""
    x1 = a[0] + np.sqrt(variances[0]) * NODES[:, None]
    x2 = a[1] + np.sqrt(variances[1]) * NODES[None, :]
    return float(np.sum(WEIGHTS[:, None] * WEIGHTS[None, :] * q_function(x1, x2)))


def test_quadrature_is_exact_on_a_polynomial():
    # E[(a1+x1)^3 (a2+x2)] = (a1^3 + 3 a1 v1) a2 for the 0.2·a1³a2 term alone: check the rule.
    a, v = np.array([0.4, -0.3]), np.array([0.2, 0.5])
    x1 = a[0] + np.sqrt(v[0]) * NODES[:, None]
    x2 = a[1] + np.sqrt(v[1]) * NODES[None, :]
    value = np.sum(WEIGHTS[:, None] * WEIGHTS[None, :] * x1**3 * x2)
    assert value == pytest.approx((a[0] ** 3 + 3 * a[0] * v[0]) * a[1], rel=1e-12)


@pytest.mark.parametrize("a", [np.array([0.3, -0.5]), np.array([-1.1, 0.8])])
@pytest.mark.parametrize("variances", [np.array([0.2, 0.6]), np.array([0.05, 0.3])])
def test_variance_derivative_is_half_the_action_curvature(a, variances):
    step = 1e-4
    for i in range(2):
        e = np.eye(2)[i]
        d_sigma = (smoothed_q(a, variances + step * e) - smoothed_q(a, variances - step * e)) / (2 * step)
        d2_action = (
            smoothed_q(a + step * e, variances)
            - 2 * smoothed_q(a, variances)
            + smoothed_q(a - step * e, variances)
        ) / step**2
        assert abs(d_sigma) > 1e-2  # not a trivially zero case
        assert d_sigma == pytest.approx(0.5 * d2_action, rel=1e-4, abs=1e-6)
