"""Compatible function approximation (supplement B) for a linear-Gaussian policy on the
linear-quadratic task, fitted to the derivative Bellman targets of supplement C.

Policy a = K s + ε, ε ~ N(0, Σ), Σ = diag(e^φ); θ = vec K. A critic is described here by its action
derivatives at the policy mean (all the policy gradient of Theorem 1 uses):

    ∇aQ̃w(s, Ks) = W f(s)                        W [m, p], f: state features [p]
    ∇²aQ̃w(s, Ks) = diag(e^φ ⊙ w_Σ) · h(s)        w_Σ [m], h: a scalar state feature

i.e. Q̃w(s, a) = (a − Ks)ᵀ W f(s) + ½ h(s) (a − Ks)ᵀ diag(e^φ ⊙ w_Σ) (a − Ks) + (terms in s alone).
The compatible critic (docs/design.md section 10) has f(s) = s and h(s) = 1: then W s = ∇θμ(s)ᵀ vec W and
diag(e^φ ⊙ w_Σ) = ∇φΣᵀ w_Σ, condition 1 of supplement B for μ and for Σ. Condition 2 is the least
squares fit of `fit_critic`. Any other f or h (same parameter count) is not compatible.

Theorem 1 with s weighted by Σ_t γ^t (= d(s) / (1 − γ), d the normalised discounted state
distribution) gives the gradient a critic implies:

    ∇_K J ≈ E_d[ ∇aQ̃w(s, Ks) sᵀ ] / (1 − γ)       = W E_d[f(s) sᵀ] / (1 − γ)
    ∇_φ J ≈ ½ e^φ ⊙ E_d[ diag ∇²aQ̃w(s, Ks) ] / (1 − γ)  = ½ e^φ ⊙ e^φ ⊙ w_Σ E_d[h(s)] / (1 − γ)

For the compatible critic E_d[s sᵀ] / (1 − γ) = Σ_K, so ∇_K J ≈ W Σ_K.

Targets (docs/design.md section 2, supplement C eq. 8 at a = Ks, the policy mean): with ã the sampled
action, x = Σ^{-1/2}(ã − Ks) and y an unbiased estimate of Qπ(s, ã),

    target_1 = Σ^{-1/2} x · (y − b(s))          E[target_1 | s] = ∇aQ̃(s, Ks)
    target_2 = (x ⊙ x − 1) / e^φ · (y − b(s))   E[target_2 | s] = diag ∇²aQ̃(s, Ks)

y is the discounted return of a rollout from (s, ã) that follows the policy, truncated after H steps
with γ^H ≤ 1e-6 (`horizon`). It is unbiased for Qπ(s, ã) up to that truncation and needs nothing
learned or known about the task; a one-step bootstrap r + γ V̂(s') would carry any error of V̂ into
the targets, and the point here is the bias of the critic's features alone. The baseline b(s) is a
control variate: a quadratic regression of y on s fitted on the other fold of the samples
(`cross_fitted_baseline`), so b(s_n) does not depend on sample n's action or return, and
E[x | s] = 0, E[x_i² − 1 | s] = 0 leave both targets' means unchanged.

States come from the discounted state distribution: t ~ Geometric(1 − γ) on {0, 1, ...}, then t
steps of the policy from s0 ~ N(0, Σ0). Samples are independent. Rollouts simulate the env's
dynamics in numpy, vectorised (SmoothieLQR-v0 steps one state at a time), clipping actions to its
bounds (`action_bound`, ±5 by default) exactly as its `step` does; the closed forms ignore the
bounds, so the samples count the clipped actions (none at the policies used here).

numpy float64 only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from smoothie_tf.envs import LQR_ACTION_BOUND
from smoothie_tf.lqr import LinearQuadratic

TRUNCATION = 1e-6  # rollouts stop after H steps, γ^H ≤ TRUNCATION
# Rows simulated at once. The products are tall and thin ([N, 3] @ [3, 3]); below ~30 000 rows
# OpenBLAS runs them on one thread, which on a busy machine is many times faster than its threads
# contending for the cores. For the same reason sums over samples use einsum, which has no BLAS.
_CHUNK = 1 << 13


@dataclasses.dataclass(frozen=True)
class GaussianPolicy:
    """a = K s + ε, ε ~ N(0, diag(e^φ)): gain K [m, n], log_variance φ [m]."""

    gain: np.ndarray
    log_variance: np.ndarray

    def __post_init__(self):
        object.__setattr__(self, "gain", np.asarray(self.gain, dtype=np.float64))
        object.__setattr__(self, "log_variance", np.asarray(self.log_variance, dtype=np.float64))
        if self.log_variance.shape != (self.gain.shape[0],):
            raise ValueError(
                f"log_variance must have shape ({self.gain.shape[0]},), got {self.log_variance.shape}"
            )

    @property
    def variance(self) -> np.ndarray:
        """e^φ [m]."""
        return np.exp(self.log_variance)

    @property
    def covariance(self) -> np.ndarray:
        """Σ = diag(e^φ) [m, m]."""
        return np.diag(self.variance)


@dataclasses.dataclass(frozen=True)
class Samples:
    """Independent samples: states s ~ d [N, n]; noise x = Σ^{-1/2}(ã − Ks) [N, m] of the sampled
    action ã; returns y [N], the truncated discounted return of a rollout from (s, ã); clipped, the
    number of actions (of all simulated steps) that the action bounds changed."""

    states: np.ndarray
    noise: np.ndarray
    returns: np.ndarray
    clipped: int = 0

    def __len__(self) -> int:
        return len(self.returns)


# --- sampling ---------------------------------------------------------------------------------------


def horizon(discount: float, truncation: float = TRUNCATION) -> int:
    """The smallest H with γ^H ≤ truncation."""
    return int(np.ceil(np.log(truncation) / np.log(discount)))


class _Dynamics:
    """One step of the policy on the task: s' = A s + B clip(ã) + w, r = −(sᵀQs + clip(ã)ᵀR clip(ã))."""

    def __init__(self, lq: LinearQuadratic, policy: GaussianPolicy, action_bound):
        self.lq, self.policy = lq, policy
        self.bound = np.broadcast_to(np.asarray(action_bound, dtype=np.float64), (lq.action_dim,))
        self.noise_factor = _square_root(lq.W)
        self.state_ones, self.action_ones = np.ones(lq.state_dim), np.ones(lq.action_dim)
        self.clipped = 0

    def step(self, s: np.ndarray, x: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """s [N, n], x [N, m] (ã = Ks + Σ^{1/2} x) → (s' [N, n], r [N])."""
        lq = self.lq
        action = s @ self.policy.gain.T + np.sqrt(self.policy.variance) * x
        clipped = np.clip(action, -self.bound, self.bound)
        self.clipped += int(np.count_nonzero(clipped != action))
        # (s Q ⊙ s) 1 is the row-wise sᵀQs, several times faster than einsum for tiny n.
        reward = -((s @ lq.Q * s) @ self.state_ones + (clipped @ lq.R * clipped) @ self.action_ones)
        noise = rng.standard_normal(s.shape) @ self.noise_factor.T
        return s @ lq.A.T + clipped @ lq.B.T + noise, reward


def _square_root(covariance: np.ndarray) -> np.ndarray:
    """F with F Fᵀ = covariance (symmetric PSD, possibly singular)."""
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)
    return eigenvectors * np.sqrt(np.clip(eigenvalues, 0.0, None))


def discounted_states(
    lq: LinearQuadratic,
    policy: GaussianPolicy,
    count: int,
    rng: np.random.Generator,
    action_bound=LQR_ACTION_BOUND,
) -> tuple[np.ndarray, int]:
    """count independent states of d(s) = (1 − γ) Σ_t γ^t p(s_t = s): t ~ Geometric(1 − γ) on
    {0, 1, ...}, then t steps of the policy from s0 ~ N(0, Σ0). Returns (states [count, n], the
    number of clipped actions)."""
    dynamics = _Dynamics(lq, policy, action_bound)
    initial_factor = _square_root(lq.initial_covariance)
    steps = rng.geometric(1.0 - lq.discount, size=count) - 1
    states = np.empty((count, lq.state_dim))
    for start in range(0, count, _CHUNK):
        # Longest first: the rows still moving at step k (steps > k) are then a prefix.
        order = start + np.argsort(-steps[start : start + _CHUNK], kind="stable")
        remaining = steps[order]
        s = rng.standard_normal((len(order), lq.state_dim)) @ initial_factor.T
        for rows in np.searchsorted(-remaining, -np.arange(remaining[0]), side="left"):
            s[:rows] = dynamics.step(s[:rows], rng.standard_normal((rows, lq.action_dim)), rng)[0]
        states[order] = s
    return states, dynamics.clipped


def rollout_returns(
    lq: LinearQuadratic,
    policy: GaussianPolicy,
    states: np.ndarray,
    rng: np.random.Generator,
    steps: int | None = None,
    action_bound=LQR_ACTION_BOUND,
) -> tuple[np.ndarray, np.ndarray, int]:
    """From each state [N, n]: ã = Ks + Σ^{1/2} x, x ~ N(0, I), then the policy; the return
    y = Σ_{k<H} γ^k r_k over H = `steps` (default `horizon(γ)`) steps. Returns (x [N, m], y [N],
    the number of clipped actions)."""
    steps = horizon(lq.discount) if steps is None else steps
    dynamics = _Dynamics(lq, policy, action_bound)
    noise = rng.standard_normal((len(states), lq.action_dim))
    returns = np.zeros(len(states))
    for start in range(0, len(states), _CHUNK):
        rows = slice(start, start + _CHUNK)
        s, x = np.array(states[rows], dtype=np.float64), noise[rows]
        for k in range(steps):
            s, reward = dynamics.step(s, x, rng)
            returns[rows] += lq.discount**k * reward
            x = rng.standard_normal(x.shape)
    return noise, returns, dynamics.clipped


def sample(
    lq: LinearQuadratic,
    policy: GaussianPolicy,
    count: int,
    rng: np.random.Generator,
    action_bound=LQR_ACTION_BOUND,
) -> Samples:
    """count independent (s ~ d, ã ~ π(·|s), y) with y the truncated Monte Carlo return from (s, ã)."""
    states, clipped_before = discounted_states(lq, policy, count, rng, action_bound)
    noise, returns, clipped_after = rollout_returns(lq, policy, states, rng, action_bound=action_bound)
    return Samples(states, noise, returns, clipped_before + clipped_after)


# --- targets (supplement C, eq. 8 at the policy mean) -----------------------------------------------


def quadratic_state_features(states: np.ndarray) -> np.ndarray:
    """[s_i s_j for i ≤ j, 1]: [N, n(n+1)/2 + 1]; V(s) = −sᵀPs − c lies in their span."""
    i, j = np.triu_indices(states.shape[1])
    return np.concatenate([states[:, i] * states[:, j], np.ones((len(states), 1))], axis=1)


def least_squares(features: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """argmin_C Σ_n ‖features_n C − targets_n‖²: features [N, p], targets [N, k] or [N] → C [p, k]
    or [p], by the normal equations (p is small; the minimum-norm solution if they are singular)."""
    gram = np.einsum("bi,bj->ij", features, features)
    return np.linalg.lstsq(gram, np.einsum("bi,b...->i...", features, targets), rcond=None)[0]


def cross_fitted_baseline(states: np.ndarray, returns: np.ndarray, folds: int = 2) -> np.ndarray:
    """b(s) [N]: least squares of the returns on `quadratic_state_features`, each fold's b from a fit
    to the other folds only (sample n is in fold n mod folds), so b(s_n) never depends on sample n
    (its action or its return)."""
    features = quadratic_state_features(states)
    baseline = np.empty(len(returns))
    fold_of = np.arange(len(returns)) % folds
    for fold in range(folds):
        held_out = fold_of == fold
        coefficients = least_squares(features[~held_out], returns[~held_out])
        baseline[held_out] = np.einsum("bi,i->b", features[held_out], coefficients)
    return baseline


def hermite_targets(
    samples: Samples, policy: GaussianPolicy, baseline: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Supplement C eq. 8 at a = Ks, one sample each (docs/design.md section 2, diagonal k = 2):
    target_1 = Σ^{-1/2} x (y − b) [N, m] and target_2 = (x ⊙ x − 1) / e^φ (y − b) [N, m], whose
    conditional means given s are ∇aQ̃(s, Ks) and diag ∇²aQ̃(s, Ks). baseline b [N] (default 0)."""
    y = samples.returns if baseline is None else samples.returns - baseline
    x, variance = samples.noise, policy.variance
    return x / np.sqrt(variance) * y[:, None], (x * x - 1.0) / variance * y[:, None]


# --- critics ----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CriticFeatures:
    """The state features of a critic: `mean` f(s) [N, n] → [N, p] (∇aQ̃w(s, Ks) = W f(s)) and
    `curvature` h(s) [N, n] → [N] (∇²aQ̃w(s, Ks) = diag(e^φ ⊙ w_Σ) h(s))."""

    name: str
    mean: Callable[[np.ndarray], np.ndarray]
    curvature: Callable[[np.ndarray], np.ndarray]


COMPATIBLE = CriticFeatures("compatible", mean=lambda s: s, curvature=lambda s: np.ones(len(s)))


def non_compatible_features(scale: float = 0.1) -> CriticFeatures:
    """A critic that is not compatible, with as many parameters (W [m, n], w_Σ [m]): a saturating
    state embedding f(s) = tanh(s / scale), as a tanh critic has, and a curvature h(s) = ‖s‖² that
    grows with the state. On the linear-quadratic task ∇aQ̃(s, Ks) is linear in s and ∇²aQ̃ is
    constant, and neither lies in these features' span, so the least squares fit is biased."""
    return CriticFeatures(
        f"tanh(s/{scale:g}), ‖s‖²",
        mean=lambda s: np.tanh(s / scale),
        curvature=lambda s: np.sum(s * s, axis=1),
    )


@dataclasses.dataclass(frozen=True)
class CriticWeights:
    """w = (W [m, p], w_Σ [m])."""

    mean: np.ndarray
    curvature: np.ndarray


def critic_action_value(
    features: CriticFeatures, weights: CriticWeights, policy: GaussianPolicy, states, actions
) -> np.ndarray:
    """The action-dependent part of Q̃w(s, a) = (a − Ks)ᵀ W f(s) + ½ h(s) (a − Ks)ᵀ diag(e^φ ⊙ w_Σ)
    (a − Ks): states [N, n], actions [N, m] → [N]."""
    offset = actions - states @ policy.gain.T
    linear = np.einsum("bi,ij,bj->b", offset, weights.mean, features.mean(states))
    quadratic = (
        0.5 * features.curvature(states) * np.sum(policy.variance * weights.curvature * offset**2, axis=1)
    )
    return linear + quadratic


def fit_critic(
    features: CriticFeatures,
    states: np.ndarray,
    target_1: np.ndarray,
    target_2: np.ndarray,
    policy: GaussianPolicy,
) -> CriticWeights:
    """Condition 2 of supplement B on the samples: W = argmin Σ_n ‖W f(s_n) − target_1_n‖² and
    w_Σ = argmin Σ_n ‖e^φ ⊙ w_Σ h(s_n) − target_2_n‖². states [N, n], targets [N, m]."""
    mean = least_squares(features.mean(states), target_1).T
    h = features.curvature(states)
    # Each action coordinate is a one-parameter regression of target_2[:, i] on e^φ_i h(s).
    curvature = np.einsum("b,bi->i", h, target_2) / np.einsum("b,b->", h, h) / policy.variance
    return CriticWeights(mean, curvature)


def policy_gradient(
    features: CriticFeatures,
    weights: CriticWeights,
    states: np.ndarray,
    policy: GaussianPolicy,
    discount: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Theorem 1 with the critic's derivatives, E_d estimated on states [N, n] ~ d:
    ∇_K J ≈ W mean_n[f(s_n) s_nᵀ] / (1 − γ) [m, n] and
    ∇_φ J ≈ ½ e^φ ⊙ e^φ ⊙ w_Σ mean_n[h(s_n)] / (1 − γ) [m]."""
    feature_moment = np.einsum("bp,bn->pn", features.mean(states), states) / len(states)  # E_d[f sᵀ]
    gain = weights.mean @ feature_moment / (1.0 - discount)
    hessian_diagonal = policy.variance * weights.curvature * np.mean(features.curvature(states))
    return gain, 0.5 * policy.variance * hessian_diagonal / (1.0 - discount)


def compatible_policy_gradient(
    weights: CriticWeights, state_moment: np.ndarray, policy: GaussianPolicy, discount: float
) -> tuple[np.ndarray, np.ndarray]:
    """The compatible critic's gradient with a given Σ_K = Σ_t γ^t E[s_t s_tᵀ] [n, n] (e.g. the
    closed form `LinearQuadratic.state_moment`): ∇_K J ≈ W Σ_K, ∇_φ J ≈ ½ e^φ ⊙ e^φ ⊙ w_Σ / (1 − γ)."""
    return weights.mean @ state_moment, 0.5 * policy.variance**2 * weights.curvature / (1.0 - discount)


def relative_error(estimate: np.ndarray, truth: np.ndarray) -> float:
    """‖estimate − truth‖ / ‖truth‖ (Frobenius)."""
    return float(np.linalg.norm(estimate - truth) / np.linalg.norm(truth))


def estimate_gradient(
    features: CriticFeatures, samples: Samples, policy: GaussianPolicy, discount: float, baseline: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Targets → least squares critic → policy gradient, on one set of samples."""
    b = cross_fitted_baseline(samples.states, samples.returns) if baseline else None
    target_1, target_2 = hermite_targets(samples, policy, b)
    weights = fit_critic(features, samples.states, target_1, target_2, policy)
    return policy_gradient(features, weights, samples.states, policy, discount)
