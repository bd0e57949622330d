"""Learning, through the training loop (`Trainer`, the path `bin/bandit` takes), on one-step tasks:
on SmoothieBandit-v0 Smoothie leaves the local optimum at 0 for the global one at 1.5 while
DDPG stays at 0 (results/bandit.md, in miniature), and on a concave quadratic reward both
agents' mean actions reach the optimum while Smoothie's variance falls (Σ → 0 is that task's
optimum).

The budgets are the smallest at which each claim held with a margin for 8 seeds (0-7) measured
outside the suite with these hparams; the comment beside each threshold gives those 8 values
(every claim holds for all 8; seed 7 comes within 0.005-0.013 of three thresholds, seeds 0-6 are
well inside them). Every claim is checked for 3 seeds (0-2), each on its own. The runs are
deterministic on one machine, so the margins are there for other machines and library versions.
"""

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from small_runs import small_hparams

from smoothie_tf import envs
from smoothie_tf.bandit_experiment import GLOBAL_OPTIMUM, LOCAL_OPTIMUM, run_seed
from smoothie_tf.training import Trainer

SEEDS = [0, 1, 2]
STATE = np.ones(1, np.float32)  # the one observation of both tasks

# --- the synthetic task: Smoothie escapes the local optimum, DDPG does not --------------------

# The shipped bandit hparams (batch 128, no warm-up, critic lr 1e-3, OU 0.15 / 0.2) with the
# tests' small networks (actor 32-32, critic 16; 32) and an actor learning rate of 2e-4, ten times
# the shipped 2e-5, which runs the full experiment's course (6000 steps of 400-300 networks, ~50 s
# a seed) in 2000 steps: Smoothie's mean peaks near the upper bound at steps 900-1200 and is back
# within 0.25 of 1.5 by steps 1400-1700 (8 seeds). At 2e-5 these networks are still short of the
# dip's far side after 2000 steps (seed 0: 0.56); at 4e-4 the budget falls to 1500 steps, but
# DDPG's mean swings up to 0.53 early on and Smoothie's settles less closely (down to 1.36).
ESCAPE_BUDGET = {"total_steps": 2000, "eval_interval": 100, "eval_episodes": 1, "checkpoint_interval": 2000}
ESCAPE_ACTOR_LR = 2e-4


def bandit_trajectory(agent: str, seed: int, tmp_path):
    hp = small_hparams(f"bandit_{agent}", ESCAPE_BUDGET, actor_lr=ESCAPE_ACTOR_LR)
    trajectory = run_seed(hp, seed, tmp_path)
    assert trajectory.steps == list(range(100, 2001, 100))
    return np.array(trajectory.means), trajectory.outcome


@pytest.mark.parametrize("seed", SEEDS)
def test_smoothie_runs_past_the_dip_and_settles_at_the_global_optimum(seed, tmp_path):
    means, outcome = bandit_trajectory("smoothie", seed, tmp_path)
    # It first runs to the upper bound 2.0 (peak of the evaluations, seeds 0-7: 1.970, 1.976,
    # 1.964, 1.983, 1.967, 1.964, 1.962, 1.985) ...
    assert means.max() > 1.8
    # ... then comes back to the global optimum (final means: 1.456, 1.456, 1.452, 1.470, 1.444,
    # 1.446, 1.476, 1.501, within 0.056 of 1.5; one still at the bound would be ~0.45 away).
    assert abs(means[-1] - GLOBAL_OPTIMUM) < 0.25
    assert outcome == "global"


@pytest.mark.parametrize("seed", SEEDS)
def test_ddpg_stays_at_the_local_optimum(seed, tmp_path):
    means, outcome = bandit_trajectory("ddpg", seed, tmp_path)
    # Never near the dip, let alone past it (largest |mean| of any evaluation, seeds 0-7: 0.122,
    # 0.107, 0.169, 0.142, 0.266, 0.151, 0.179, 0.392; 0.4 is bin/bandit's radius of "local", so
    # seed 7, untested here, comes close to it) ...
    assert np.abs(means - LOCAL_OPTIMUM).max() < 0.4
    # ... and back on it at the end (final |mean|: 0.002, 0.000, 0.000, 0.001, 0.013, 0.005,
    # 0.004, 0.002).
    assert abs(means[-1] - LOCAL_OPTIMUM) < 0.05
    assert outcome == "local"


# --- a concave quadratic: both agents reach the optimum, Smoothie's variance falls ------------

QUADRATIC_ID = "SmoothieTestQuadraticBandit-v0"
QUADRATIC_OPTIMUM = 0.8


class QuadraticBandit(gym.Env):
    """One state (observation [1.0]), actions in [−2, 2], episodes of one step, reward
    r(a) = −(a − 0.8)²: the best policy is the deterministic mean action 0.8."""

    metadata = {"render_modes": []}
    observation_space = gym.spaces.Box(0.0, 2.0, shape=(1,), dtype=np.float32)
    action_space = gym.spaces.Box(-2.0, 2.0, shape=(1,), dtype=np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return STATE.copy(), {}

    def step(self, action):
        a = float(np.clip(np.asarray(action, np.float64).reshape(1), -2.0, 2.0)[0])
        return STATE.copy(), -((a - QUADRATIC_OPTIMUM) ** 2), True, False, {}


if QUADRATIC_ID not in gym.registry:
    gym.register(id=QUADRATIC_ID, entry_point=QuadraticBandit)

# The bandit hparams and small networks again, actor lr 2e-4 and critic lr 3e-3 (the shipped
# 1e-3 learns the reward's curvature more slowly, and the mean, following a critic that is still
# nearly linear, overshoots to ~1.6 and is back only by step ~1100). With 3e-3 every mean
# overshoots to 1.08-1.51 at steps 400-500 (seen every 100 steps) and is back within 0.1 of 0.8
# by step 800 (8 seeds of each agent), but for Smoothie's seed 7, which peaks at 1.49 and is
# still 0.19 away at step 1000.
QUADRATIC_BUDGET = {"total_steps": 1000, "eval_interval": 1000, "eval_episodes": 1}
QUADRATIC_BUDGET |= {"checkpoint_interval": 1000}
QUADRATIC_RATES = {"actor_lr": 2e-4, "critic_lr": 3e-3}


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("agent", ["smoothie", "ddpg"])
def test_mean_action_reaches_the_optimum_of_a_concave_reward(agent, seed, tmp_path):
    hp = small_hparams(f"bandit_{agent}", QUADRATIC_BUDGET, **QUADRATIC_RATES)
    trainer = Trainer(QUADRATIC_ID, hp, seed, tmp_path)
    policy = trainer.agent.policy  # a population of one: states [1, B, 1] -> means [1, B, 1]

    def distance() -> float:
        return abs(float(policy(STATE[None, None])[0, 0, 0]) - QUADRATIC_OPTIMUM)

    def variance() -> np.ndarray:
        return policy.variance().numpy()[0]

    start_distance, start_variance = distance(), variance()
    # The deterministic return, through the loop's own evaluation (it draws no training noise).
    start_return = trainer.evaluate(1)[0]
    final_return = trainer.run()["last_eval_return"]
    final_distance, final_variance = distance(), variance()

    # The policy starts near a = 0 (distances, seeds 0-7 of either agent: 0.796-0.807) ...
    assert start_distance > 0.75
    # ... and ends near the optimum (seeds 0-7, Smoothie: 0.014, 0.055, 0.046, 0.011, 0.039,
    # 0.031, 0.069, 0.187 (seed 7, untested here, late back from its overshoot); DDPG: 0.033,
    # 0.048, 0.071, 0.054, 0.066, 0.069, 0.062, 0.076).
    assert final_distance < 0.2
    # The return −(μ − 0.8)² rises from about −0.64 (−0.634 to −0.651) to near 0 (seeds 0-7, the
    # lowest: Smoothie −0.0350 at seed 7, then −0.0047; DDPG −0.0058), a gain of at least 0.60
    # in each of the 16 runs.
    assert final_return > -0.04
    assert final_return - start_return > 0.55
    if agent == "smoothie":
        # The critic's action-Hessian at the mean is negative (−0.23 to −1.02 from step 600 on,
        # seen every 100 steps, seeds 0-7), so ½·H·e^φ drives φ down: the variance falls from
        # e^−1 = 0.368 to 0.290-0.299 (seeds 0-7), by 19-21%.
        assert start_variance == pytest.approx([np.exp(-1.0)])
        assert np.all(final_variance < 0.9 * start_variance)
    else:  # DDPG does not train φ
        np.testing.assert_array_equal(final_variance, start_variance)


def test_the_quadratic_bandit_passes_gymnasiums_checker_and_pays_its_reward():
    env = envs.make_env(QUADRATIC_ID, seed=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped, skip_render_check=True)
    # The one remark, as for SmoothieBandit-v0: the range [−2, 2] is not the recommended [−1, 1].
    assert [str(w.message) for w in caught if "symmetric and normalized" not in str(w.message)] == []
    observation, _ = env.reset(seed=1)
    np.testing.assert_array_equal(observation, STATE)
    rewards = [env.step(np.array([a], np.float32))[1] for a in (0.8, 0.0, 2.0, 5.0)]
    np.testing.assert_allclose(rewards, [0.0, -0.64, -1.44, -1.44], rtol=1e-6, atol=1e-7)
    assert env.step(np.zeros(1, np.float32))[2:4] == (True, False)
