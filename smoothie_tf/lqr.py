"""Closed forms of the discounted linear-quadratic task (docs/design.md section 10), in numpy float64.

Dynamics s' = A s + B a + w, w ~ N(0, W); reward r = −(sᵀQs + aᵀRa); s0 ~ N(0, Σ0); discount γ.
A linear-Gaussian policy a = K s + ε, ε ~ N(0, Σ), has K [m, n] and Σ [m, m]; A_K = A + B K.
The policy's values are finite when it is stabilising in the discounted sense, sqrt(γ)·ρ(A_K) < 1;
a method given any other K raises ValueError.

The discounted Lyapunov equations are solved exactly by their vec form (the dimensions are
tiny); the discounted Riccati equation by iterating it to a fixed point.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

# Riccati iteration: stop when no entry of P moves by more than this times max(1, max |P|). The
# iteration contracts at the rate (sqrt(γ)·ρ(A + BK*))², so P* is then off by at most this step
# over one minus that rate.
RICCATI_TOLERANCE = 1e-12
RICCATI_MAX_ITERATIONS = 1_000_000
# Symmetry and definiteness are judged relative to the matrix's scale.
_SYMMETRY_TOLERANCE = 1e-10
_DEFINITENESS_TOLERANCE = 1e-12


def _matrix(name: str, value) -> np.ndarray:
    try:
        matrix = np.array(value, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be a matrix of numbers, got {value!r}") from error
    if matrix.ndim != 2:
        raise ValueError(f"{name} must be a matrix (2-D), got shape {matrix.shape}")
    if not np.all(np.isfinite(matrix)):
        raise ValueError(f"{name} must be finite, got {matrix.tolist()}")
    return matrix


def _symmetric(name: str, matrix: np.ndarray, definite: bool) -> np.ndarray:
    """`matrix` symmetrised, after checking it is symmetric and positive (semi)definite."""
    scale = max(1.0, float(np.max(np.abs(matrix), initial=0.0)))
    if not np.allclose(matrix, matrix.T, rtol=0.0, atol=_SYMMETRY_TOLERANCE * scale):
        raise ValueError(f"{name} must be symmetric, got {matrix.tolist()}")
    matrix = 0.5 * (matrix + matrix.T)
    eigenvalues = np.linalg.eigvalsh(matrix)
    if definite and not eigenvalues[0] > _DEFINITENESS_TOLERANCE * max(1.0, eigenvalues[-1]):
        raise ValueError(f"{name} must be positive definite, its eigenvalues are {eigenvalues.tolist()}")
    if not definite and eigenvalues[0] < -_DEFINITENESS_TOLERANCE * max(1.0, eigenvalues[-1]):
        raise ValueError(f"{name} must be positive semidefinite, its eigenvalues are {eigenvalues.tolist()}")
    return matrix


def checked_matrices(A, B, Q, R, W, initial_covariance) -> dict[str, np.ndarray]:
    """The task's matrices as float64 arrays, checked: A [n, n], B [n, m], Q [n, n], R [m, m],
    W [n, n], Σ0 = `initial_covariance` [n, n], all finite; Q and W symmetric positive
    semidefinite, R and Σ0 symmetric positive definite. Raises ValueError naming the argument."""
    matrices = {name: _matrix(name, value) for name, value in zip("ABQRW", (A, B, Q, R, W), strict=True)}
    matrices["initial_covariance"] = _matrix("initial_covariance", initial_covariance)
    n = matrices["A"].shape[0]
    if matrices["A"].shape != (n, n):
        raise ValueError(f"A must be square, got shape {matrices['A'].shape}")
    if matrices["B"].shape[0] != n:
        raise ValueError(f"B must have n = {n} rows (A is {n}×{n}), got shape {matrices['B'].shape}")
    m = matrices["B"].shape[1]
    for name, shape in [("Q", (n, n)), ("R", (m, m)), ("W", (n, n)), ("initial_covariance", (n, n))]:
        if matrices[name].shape != shape:
            raise ValueError(
                f"{name} must have shape {shape} (state dimension {n}, action dimension {m}), "
                f"got {matrices[name].shape}"
            )
    for name, definite in [("Q", False), ("R", True), ("W", False), ("initial_covariance", True)]:
        matrices[name] = _symmetric(name, matrices[name], definite)
    return matrices


def _read_only(matrix: np.ndarray) -> np.ndarray:
    matrix.setflags(write=False)
    return matrix


@dataclasses.dataclass(frozen=True, eq=False)
class LinearQuadratic:
    """The discounted linear-quadratic task and the closed forms of its linear-Gaussian policies.

    A [n, n], B [n, m], Q [n, n], R [m, m], W [n, n], initial_covariance Σ0 [n, n] (checked by
    `checked_matrices`); discount γ in (0, 1). K: [m, n]; Sigma: [m, m] symmetric PSD.
    """

    A: np.ndarray
    B: np.ndarray
    Q: np.ndarray
    R: np.ndarray
    W: np.ndarray
    initial_covariance: np.ndarray
    discount: float

    def __post_init__(self):
        matrices = checked_matrices(self.A, self.B, self.Q, self.R, self.W, self.initial_covariance)
        for name, matrix in matrices.items():
            object.__setattr__(self, name, _read_only(matrix))
        discount = float(self.discount)
        if not 0.0 < discount < 1.0:
            raise ValueError(f"discount must be in (0, 1), got {self.discount}")
        object.__setattr__(self, "discount", discount)

    @classmethod
    def from_env(cls, env, discount: float) -> LinearQuadratic:
        """The task of a `SmoothieLQR-v0` env (any wrapping), read from `env.unwrapped`."""
        task = env.unwrapped
        return cls(task.A, task.B, task.Q, task.R, task.W, task.initial_covariance, discount)

    @property
    def state_dim(self) -> int:
        return self.A.shape[0]

    @property
    def action_dim(self) -> int:
        return self.B.shape[1]

    # --- checks -------------------------------------------------------------------------------

    def spectral_radius(self, K) -> float:
        """sqrt(γ)·ρ(A + BK): the policy is stabilising (discounted) when this is below 1."""
        K = self._gain(K, check_stabilising=False)
        return float(np.sqrt(self.discount) * np.max(np.abs(np.linalg.eigvals(self.A + self.B @ K))))

    def is_stabilising(self, K) -> bool:
        """sqrt(γ)·ρ(A + BK) < 1."""
        return self.spectral_radius(K) < 1.0

    def _gain(self, K, check_stabilising: bool = True) -> np.ndarray:
        K = np.asarray(K, dtype=np.float64)
        if K.shape != (self.action_dim, self.state_dim):
            raise ValueError(f"K must have shape {(self.action_dim, self.state_dim)}, got {K.shape}")
        if not np.all(np.isfinite(K)):
            raise ValueError("K must be finite")
        if check_stabilising:
            radius = self.spectral_radius(K)
            if not radius < 1.0:
                raise ValueError(
                    f"K is not stabilising: sqrt(γ)·ρ(A + BK) = {radius:.6g} >= 1 (γ = {self.discount}), "
                    "so the discounted values are infinite"
                )
        return K

    def _covariance(self, Sigma) -> np.ndarray:
        Sigma = np.asarray(Sigma, dtype=np.float64)
        if Sigma.shape != (self.action_dim, self.action_dim):
            raise ValueError(f"Sigma must have shape {(self.action_dim, self.action_dim)}, got {Sigma.shape}")
        if not np.all(np.isfinite(Sigma)):
            raise ValueError("Sigma must be finite")
        return _symmetric("Sigma", Sigma, definite=False)

    # --- one policy -----------------------------------------------------------------------------

    def value_matrix(self, K) -> np.ndarray:
        """P [n, n] of V(s) = −sᵀPs − c: the discounted Lyapunov equation P = Q + KᵀRK + γ A_Kᵀ P A_K."""
        K = self._gain(K)
        return _discounted_lyapunov(
            self.A + self.B @ K, self.Q + K.T @ self.R @ K, self.discount, transpose=True
        )

    def action_curvature(self, K) -> np.ndarray:
        """M = R + γ BᵀPB [m, m]: −Qπ is a quadratic in a with Hessian 2M."""
        P = self.value_matrix(K)
        return self.R + self.discount * self.B.T @ P @ self.B

    def value_constant(self, K, Sigma) -> float:
        """c = [tr(MΣ) + γ tr(PW)] / (1 − γ): the cost of the policy's and the dynamics' noise."""
        Sigma = self._covariance(Sigma)
        P = self.value_matrix(K)
        M = self.R + self.discount * self.B.T @ P @ self.B
        return float((np.trace(M @ Sigma) + self.discount * np.trace(P @ self.W)) / (1.0 - self.discount))

    def value(self, states, K, Sigma) -> np.ndarray:
        """V(s) = −sᵀPs − c: states [N, n] → [N]."""
        states = self._states(states)
        P = self.value_matrix(K)
        return -np.einsum("bi,ij,bj->b", states, P, states) - self.value_constant(K, Sigma)

    def q_value(self, states, actions, K, Sigma) -> np.ndarray:
        """Qπ(s, a) = −sᵀQs − aᵀRa − γ (As + Ba)ᵀP(As + Ba) − γ tr(PW) − γc: [N, n], [N, m] → [N]."""
        states, actions = self._states(states), self._actions(actions, states)
        P = self.value_matrix(K)
        mean_next = states @ self.A.T + actions @ self.B.T
        return (
            -np.einsum("bi,ij,bj->b", states, self.Q, states)
            - np.einsum("bi,ij,bj->b", actions, self.R, actions)
            - self.discount * np.einsum("bi,ij,bj->b", mean_next, P, mean_next)
            - self.discount * np.trace(P @ self.W)
            - self.discount * self.value_constant(K, Sigma)
        )

    def smoothed_q_value(self, states, actions, K, Sigma) -> np.ndarray:
        """Q̃π(s, a) = E_{ã~N(a, Σ)} Qπ(s, ã) = Qπ(s, a) − tr(MΣ): [N, n], [N, m] → [N]."""
        Sigma = self._covariance(Sigma)
        return self.q_value(states, actions, K, Sigma) - np.trace(self.action_curvature(K) @ Sigma)

    def smoothed_q_gradient(self, states, actions, K, Sigma) -> np.ndarray:
        """∇aQ̃ = −2Ra − 2γBᵀP(As + Ba): [N, n], [N, m] → [N, m] (independent of Σ)."""
        states, actions = self._states(states), self._actions(actions, states)
        self._covariance(Sigma)
        P = self.value_matrix(K)
        mean_next = states @ self.A.T + actions @ self.B.T
        return -2.0 * actions @ self.R - 2.0 * self.discount * mean_next @ P @ self.B

    def smoothed_q_hessian(self, K) -> np.ndarray:
        """∇²aQ̃ = −2M [m, m], the same at every (s, a)."""
        return -2.0 * self.action_curvature(K)

    def objective(self, K, Sigma) -> float:
        """J(K, Σ) = E_{s0~N(0, Σ0)} V(s0) = −tr(PΣ0) − c."""
        P = self.value_matrix(K)
        return float(-np.trace(P @ self.initial_covariance) - self.value_constant(K, Sigma))

    def state_moment(self, K, Sigma) -> np.ndarray:
        """Σ_K = Σ_t γ^t E[s_t s_tᵀ] [n, n]: Σ_K = Σ0 + γ A_K Σ_K A_Kᵀ + γ (BΣBᵀ + W) / (1 − γ)."""
        K, Sigma = self._gain(K), self._covariance(Sigma)
        noise = (self.B @ Sigma @ self.B.T + self.W) / (1.0 - self.discount)
        source = self.initial_covariance + self.discount * noise
        return _discounted_lyapunov(self.A + self.B @ K, source, self.discount, transpose=False)

    def objective_gradient_gain(self, K, Sigma) -> np.ndarray:
        """∇_K J = −2 (M K + γ BᵀPA) Σ_K [m, n]."""
        K = self._gain(K)
        P = self.value_matrix(K)
        M = self.R + self.discount * self.B.T @ P @ self.B
        return -2.0 * (M @ K + self.discount * self.B.T @ P @ self.A) @ self.state_moment(K, Sigma)

    def objective_gradient_covariance(self, K) -> np.ndarray:
        """∇_Σ J = −M / (1 − γ) [m, m] (J is linear in Σ); Theorem 1: = ½ Σ_t γ^t E[∇²aQ̃]."""
        return -self.action_curvature(K) / (1.0 - self.discount)

    def objective_gradient_log_variance(self, K, log_variance) -> np.ndarray:
        """∇_φ J = e^φ ⊙ diag(∇_Σ J) [m] for Σ = diag(e^φ), φ = `log_variance` [m]."""
        log_variance = np.asarray(log_variance, dtype=np.float64)
        if log_variance.shape != (self.action_dim,):
            raise ValueError(f"log_variance must have shape {(self.action_dim,)}, got {log_variance.shape}")
        return np.exp(log_variance) * np.diag(self.objective_gradient_covariance(K))

    # --- the optimum ----------------------------------------------------------------------------

    def optimal_value_matrix(self) -> np.ndarray:
        """P* [n, n], the fixed point of the discounted Riccati equation
        P = Q + γAᵀPA − γ² AᵀPB (R + γBᵀPB)⁻¹ BᵀPA, found by iterating it from P = Q."""
        return self._optimum[0].copy()

    def optimal_gain(self) -> np.ndarray:
        """K* = −γ (R + γBᵀP*B)⁻¹ BᵀP*A [m, n]; with Σ* = 0 it maximises J."""
        return self._optimum[1].copy()

    @functools.cached_property
    def _optimum(self) -> tuple[np.ndarray, np.ndarray]:
        A, B, Q, R, gamma = self.A, self.B, self.Q, self.R, self.discount
        P = Q.copy()
        for _ in range(RICCATI_MAX_ITERATIONS):
            with np.errstate(over="ignore", invalid="ignore"):
                gain = -gamma * np.linalg.solve(R + gamma * B.T @ P @ B, B.T @ P @ A)
                A_K = A + B @ gain
                # The Riccati map as the Lyapunov update of its greedy gain: the same value, kept symmetric.
                updated = Q + gain.T @ R @ gain + gamma * A_K.T @ P @ A_K
                updated = 0.5 * (updated + updated.T)
            if not np.all(np.isfinite(updated)):
                raise ValueError(
                    "the discounted Riccati iteration diverged: no gain K makes sqrt(γ)·(A + BK) stable"
                )
            converged = np.max(np.abs(updated - P)) <= RICCATI_TOLERANCE * max(1.0, np.max(np.abs(P)))
            P = updated
            if converged:
                gain = -gamma * np.linalg.solve(R + gamma * B.T @ P @ B, B.T @ P @ A)
                if not self.is_stabilising(gain):
                    raise ValueError(
                        f"the Riccati fixed point's gain is not stabilising (sqrt(γ)·ρ(A + BK*) = "
                        f"{self.spectral_radius(gain):.6g}): Q does not see a mode it would have to control"
                    )
                return _read_only(P), _read_only(gain)
        raise ValueError(
            f"the discounted Riccati iteration did not converge in {RICCATI_MAX_ITERATIONS} steps"
        )

    # --- inputs ---------------------------------------------------------------------------------

    def _states(self, states) -> np.ndarray:
        states = np.asarray(states, dtype=np.float64)
        if states.ndim != 2 or states.shape[1] != self.state_dim:
            raise ValueError(f"states must have shape [N, {self.state_dim}], got {states.shape}")
        return states

    def _actions(self, actions, states: np.ndarray) -> np.ndarray:
        actions = np.asarray(actions, dtype=np.float64)
        if actions.shape != (states.shape[0], self.action_dim):
            raise ValueError(
                f"actions must have shape {(states.shape[0], self.action_dim)}, got {actions.shape}"
            )
        return actions


def _discounted_lyapunov(A_K: np.ndarray, source: np.ndarray, discount: float, transpose: bool) -> np.ndarray:
    """X = source + γ A_Kᵀ X A_K (transpose) or X = source + γ A_K X A_Kᵀ, solved exactly in vec
    form: for row-major vec, vec(F X Fᵀ) = (F ⊗ F) vec(X)."""
    F = A_K.T if transpose else A_K
    n = F.shape[0]
    X = np.linalg.solve(np.eye(n * n) - discount * np.kron(F, F), source.reshape(-1)).reshape(n, n)
    return 0.5 * (X + X.T)
