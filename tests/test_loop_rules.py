"""The training loop's rules (`smoothie_tf.training.Trainer`), checked by counting: when updates
start and how many there are, where actions come from during and after warm-up, what reaches the
replay buffer (actions and the terminated flag), on a small env whose episodes end known ways.

Most tests run the loop with `CountingAgent`, an agent (a population of one, as the loop builds for
a single run) that only records what the loop asks of it, put in place of
`training.make_population`.
"""

import dataclasses

import gymnasium as gym
import numpy as np
import pytest
import tensorflow as tf
from small_runs import SMALL_NETWORKS

from smoothie_tf import hparams as hparams_lib
from smoothie_tf import training
from smoothie_tf.agents.base import FINITE, HEALTHY
from smoothie_tf.networks import GaussianPolicy

ENV_ID = "LoopRulesCountdown-v0"
LOW = np.array([-1.0, -2.0], np.float32)
HIGH = np.array([2.0, 1.0], np.float32)
TIME_LIMIT = 8  # gymnasium's TimeLimit truncates even-numbered episodes here
TERMINATE_AT = 5  # odd-numbered episodes end in a terminal state at this step


class CountdownEnv(gym.Env):
    """Observation [episode, t, 1 if this step ended the episode in a terminal state]; reward t.

    Episodes are numbered by the env's resets from 0; odd ones terminate at step TERMINATE_AT,
    even ones run until the TimeLimit (registered below) truncates them at TIME_LIMIT. Every
    action `step` receives is kept in `received`, as received.
    """

    metadata = {"render_modes": []}

    def __init__(self):
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(3,), dtype=np.float32)
        self.action_space = gym.spaces.Box(LOW, HIGH, dtype=np.float32)
        self.received: list[np.ndarray] = []
        self.resets = 0
        self.episode = self.t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.episode, self.t = self.resets, 0
        self.resets += 1
        return np.array([self.episode, 0, 0], np.float32), {}

    def step(self, action):
        self.received.append(np.array(action, copy=True))
        self.t += 1
        terminated = self.episode % 2 == 1 and self.t == TERMINATE_AT
        observation = np.array([self.episode, self.t, float(terminated)], np.float32)
        return observation, float(self.t), terminated, False, {}


if ENV_ID not in gym.registry:
    gym.register(id=ENV_ID, entry_point=CountdownEnv, max_episode_steps=TIME_LIMIT)


class CountingAgent:
    """What Trainer asks of an agent (the population interface, one member), recorded: every call
    as (what, trainer.step, len(replay)), the batches [1, B, ...] it was given, each exploring
    action it returned (`issued`), and the mask of each noise reset, in order.

    Its exploring actions are a fixed sequence, distinct from call to call and inside the box
    (or just outside it, with `outside=True`); its mean action is that of `policy`, a small
    untrained Gaussian policy (what the loop exports at the end of a run).
    """

    def __init__(self, observation_dim: int, action_space, seeds: list[int], outside: bool = False):
        self.members = len(seeds)
        assert self.members == 1, "the counts below are those of one run"
        self.observation_dim = observation_dim
        self.low, self.high = action_space.low, action_space.high
        self.outside = outside
        self.policy = GaussianPolicy(self.low, self.high, hidden=(4,), members=1, initial_seeds=seeds)
        self.policy(tf.zeros([1, 1, observation_dim]))
        self.trainer: training.Trainer | None = None
        self.calls: list[tuple[str, int, int]] = []
        self.batches = []
        self.issued: list[np.ndarray] = []
        self.noise_resets: list = []
        self.metrics = {
            "loss/critic": tf.constant([1.0]),
            "loss/policy": tf.constant([-1.0]),
            FINITE: tf.constant([True]),
            HEALTHY: tf.constant([True]),
        }

    def _record(self, what: str) -> None:
        self.calls.append((what, self.trainer.step, len(self.trainer.replay)))

    def _exploring_action(self) -> np.ndarray:
        k = len(self.issued)
        if self.outside:
            action = np.where(k % 2 == 0, self.high + 0.5 + 0.01 * k, self.low - 0.5 - 0.01 * k)
        else:
            action = self.low + (self.high - self.low) * np.mod(0.618 * k + np.array([0.1, 0.7]), 1.0)
        action = action.astype(np.float32)
        self.issued.append(action)
        return action

    def _check_observations(self, observations) -> None:
        assert np.shape(observations) == (self.members, self.observation_dim), np.shape(observations)

    def act_population(self, observations, deterministic: bool = False) -> np.ndarray:
        self._check_observations(observations)
        if deterministic:
            return self.policy(np.asarray(observations, np.float32)[:, None])[:, 0].numpy()
        self._record("act")
        return self._exploring_action()[None]

    def train_step(self, batch) -> dict:
        self._record("train_step")
        self.batches.append(batch)
        return dict(self.metrics)

    def train_step_and_act(self, batch, observations) -> tuple[dict, tf.Tensor]:
        self._check_observations(observations)
        self._record("train_step_and_act")
        self.batches.append(batch)
        return dict(self.metrics), tf.constant(self._exploring_action()[None])

    def reset_noise(self, mask=None) -> None:
        self.noise_resets.append(mask)

    def member_state(self, k: int) -> dict[str, np.ndarray]:
        return {name: v[k].numpy() for name, v in self.policy.named_variables().items()}

    def load_member_states(self, states) -> None:
        for name, variable in self.policy.named_variables().items():
            variable.assign(np.stack([state[name] for state in states]))


def loop_hparams(**overrides) -> hparams_lib.HParams:
    """Small networks (for the real agent) and a run that evaluates and checkpoints at its end only."""
    budget = {"replay_capacity": 10_000, "batch_size": 16, "eval_interval": 10**6, "eval_episodes": 1}
    budget |= {"checkpoint_interval": 10**6, "updates_per_step": 1, "warmup_steps": 0}
    return dataclasses.replace(hparams_lib.HParams(), **{**SMALL_NETWORKS, **budget, **overrides})


def counted_run(monkeypatch, tmp_path, outside: bool = False, **overrides):
    """A finished run with a CountingAgent: (trainer, agent, actions the train env received [T, d])."""
    agents = []

    def make_counting_agent(hps, observation_dim, action_space, seeds):
        assert len(hps) == len(seeds) == 1
        agents.append(CountingAgent(observation_dim, action_space, seeds, outside=outside))
        return agents[-1]

    monkeypatch.setattr(training, "make_population", make_counting_agent)
    trainer = training.Trainer(ENV_ID, loop_hparams(**overrides), 0, tmp_path)
    (agent,) = agents
    agent.trainer = trainer
    trainer.run()
    return trainer, agent, np.stack(trainer.env.unwrapped.received)


def stored_transitions(trainer) -> dict[str, np.ndarray]:
    """The replay buffer's arrays, transition by transition (its capacity exceeds the run)."""
    replay, n = trainer.replay, trainer.step
    assert len(replay) == replay.added == n
    slots = replay.observation_slot[:n]
    return {
        "observations": replay.observations[slots],
        "actions": replay.actions[:n],
        "rewards": replay.rewards[:n],
        "next_observations": replay.observations[slots + 1],
        "terminated": replay.terminated[:n],
    }


# --- updates ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "updates_per_step, warmup_steps, batch_size",
    [(1, 0, 16), (3, 0, 16), (3, 30, 16), (1, 10, 24)],
)
def test_updates_start_with_a_full_batch_and_come_updates_per_step_at_a_time(
    monkeypatch, tmp_path, updates_per_step, warmup_steps, batch_size
):
    total = 60
    trainer, agent, received = counted_run(
        monkeypatch,
        tmp_path,
        total_steps=total,
        updates_per_step=updates_per_step,
        warmup_steps=warmup_steps,
        batch_size=batch_size,
    )
    updates = [(what, step, size) for what, step, size in agent.calls if what != "act"]
    # From the env step after which the buffer first holds a batch, through the last one.
    assert len(updates) == updates_per_step * (total - batch_size + 1)
    assert min(size for _, _, size in updates) == batch_size  # none before the buffer holds a batch
    for step in range(1, total + 1):
        at_step = [(what, size) for what, s, size in updates if s == step]
        if step < batch_size:
            assert at_step == []
            continue
        assert len(at_step) == updates_per_step
        assert all(size == step for _, size in at_step)  # after this step's transition was stored
        # The last update of a step draws the next action once warm-up is over.
        last = "train_step_and_act" if step >= warmup_steps else "train_step"
        assert [what for what, _ in at_step] == ["train_step"] * (updates_per_step - 1) + [last]
    for batch in agent.batches:  # one member's batch, [1, B, ...]
        assert batch.observations.shape == (1, batch_size, 3) and batch.actions.shape == (1, batch_size, 2)
        assert batch.rewards.shape == batch.terminated.shape == (1, batch_size)
        assert batch.next_observations.shape == (1, batch_size, 3)

    # From warm-up's end, every action the env received is the agent's next exploring action,
    # each used once; the agent draws none before (only the one for step T + 1 goes unused).
    assert len(received) == total
    assert all(step >= warmup_steps for what, step, _ in agent.calls if what == "act")
    unused = 1 if total >= max(batch_size, warmup_steps) else 0
    assert len(agent.issued) == total - warmup_steps + unused
    np.testing.assert_array_equal(received[warmup_steps:], np.stack(agent.issued[: total - warmup_steps]))
    np.testing.assert_array_equal(stored_transitions(trainer)["actions"], received)
    # Once at each episode start after the first, of every member (a run of one: no mask).
    assert agent.noise_resets == [None] * trainer.episode and trainer.episode > 0


# --- warm-up ----------------------------------------------------------------------------


def kolmogorov_smirnov_uniform(samples: np.ndarray, low: float, high: float) -> tuple[float, float]:
    """The one-sample KS statistic D of `samples` against U(low, high), and its p-value from the
    asymptotic Kolmogorov distribution with Stephens' small-sample correction:
    p = Q((sqrt(n) + 0.12 + 0.11/sqrt(n))·D), Q(λ) = 2 Σ_k (−1)^(k−1) exp(−2k²λ²)."""
    x = np.sort(np.clip((np.asarray(samples, np.float64) - low) / (high - low), 0.0, 1.0))  # U's CDF
    n = len(x)
    d = max(np.max(np.arange(1, n + 1) / n - x), np.max(x - np.arange(n) / n))
    return d, kolmogorov_survival((np.sqrt(n) + 0.12 + 0.11 / np.sqrt(n)) * d)


def kolmogorov_survival(lam: float) -> float:
    """P(K > λ) for Kolmogorov's K (the series; it is 1 to float precision below λ = 0.2)."""
    if lam < 0.2:
        return 1.0
    k = np.arange(1, 101)
    return float(np.clip(2 * np.sum((-1.0) ** (k - 1) * np.exp(-2 * k**2 * lam**2)), 0.0, 1.0))


# The significance of each per-dimension test: with 2 dimensions, a correct loop fails with
# probability < 2e-3 (here it never does: the run is seeded).
ALPHA = 1e-3


def test_warmup_actions_are_uniform_in_the_box_and_not_the_agents(monkeypatch, tmp_path):
    # The p-values are Kolmogorov's: its 95% and 99.9% quantiles are 1.3581 and 1.9495.
    assert kolmogorov_survival(1.3581) == pytest.approx(0.05, abs=1e-4)
    assert kolmogorov_survival(1.9495) == pytest.approx(1e-3, abs=1e-5)

    n = 3000
    trainer, agent, received = counted_run(monkeypatch, tmp_path, total_steps=n, warmup_steps=n)
    # The agent drew one action only: in the last update, for step n + 1, which the run never takes.
    assert [call for call in agent.calls if call[0] != "train_step"] == [("train_step_and_act", n, n)]
    assert len(agent.issued) == 1
    assert received.dtype == np.float32 and received.shape == (n, 2)
    assert np.all(received >= LOW) and np.all(received <= HIGH)
    np.testing.assert_array_equal(stored_transitions(trainer)["actions"], received)
    for i in range(2):
        _, p = kolmogorov_smirnov_uniform(received[:, i], LOW[i], HIGH[i])
        assert p > ALPHA, (i, p)

    # The same test, on as many samples, tells apart what a wrong warm-up could draw.
    rng = np.random.default_rng(0)
    mid, spread = (LOW + HIGH) / 2, (HIGH - LOW) / np.sqrt(12)
    stand_ins = {
        "a Gaussian of the uniform's mean and variance, clipped to the box": np.clip(
            rng.normal(mid, spread, size=(n, 2)), LOW, HIGH
        ),
        "uniform in [-1, 1] whatever the box": rng.uniform(-1, 1, size=(n, 2)),
        "uniform in the first dimension's bounds": rng.uniform(LOW[0], HIGH[0], size=(n, 2)),
    }
    for name, samples in stand_ins.items():
        p = [kolmogorov_smirnov_uniform(samples[:, i], LOW[i], HIGH[i])[1] for i in range(2)]
        assert min(p) < ALPHA, (name, p)


# --- what reaches the replay buffer -----------------------------------------------------


def test_terminated_is_stored_as_1_and_a_time_limit_as_0(monkeypatch, tmp_path):
    """An odd episode's 5th step terminates (stored 1: no bootstrap); an even episode's 8th is
    truncated by gymnasium's TimeLimit (stored 0: it bootstraps from s'), and the batches the
    agent gets say the same."""
    total = 80
    trainer, agent, _ = counted_run(monkeypatch, tmp_path, total_steps=total, warmup_steps=total)
    stored = stored_transitions(trainer)
    episode, t, flag = stored["next_observations"].T
    terminal = (episode % 2 == 1) & (t == TERMINATE_AT)
    truncated = (episode % 2 == 0) & (t == TIME_LIMIT)
    assert terminal.sum() >= 5 and truncated.sum() >= 5
    np.testing.assert_array_equal(stored["terminated"], terminal)
    np.testing.assert_array_equal(flag, terminal)
    # Both kinds of end started a new episode: the next transition leaves episode + 1's reset state.
    ends = np.flatnonzero(terminal | truncated)
    ends = ends[ends + 1 < total]
    np.testing.assert_array_equal(stored["observations"][ends + 1][:, :2], np.c_[episode[ends] + 1, 0 * ends])
    assert trainer.episode == len(np.flatnonzero(terminal | truncated))

    rows = {"terminal": 0, "truncated": 0}
    for batch in agent.batches:
        (terminated,), (next_observations,) = batch.terminated, batch.next_observations  # member 0
        next_episode, next_t, next_flag = next_observations.T
        assert batch.terminated.dtype == np.float32
        np.testing.assert_array_equal(terminated, next_flag)
        rows["terminal"] += int(np.sum(terminated == 1.0))
        rows["truncated"] += int(np.sum((next_episode % 2 == 0) & (next_t == TIME_LIMIT)))
        assert np.all(terminated[(next_episode % 2 == 0) & (next_t == TIME_LIMIT)] == 0.0)
    assert rows["terminal"] > 10 and rows["truncated"] > 10, rows


def test_the_loop_steps_and_stores_the_agents_action_as_it_is(monkeypatch, tmp_path):
    """The loop does not clip: the action bounds are the agent's job (both agents clip, see
    tests/test_agents.py). An agent returning actions outside the box has them stepped and stored
    unchanged, so the replay always holds what the env received."""
    total = 40
    trainer, agent, received = counted_run(monkeypatch, tmp_path, outside=True, total_steps=total)
    np.testing.assert_array_equal(received, np.stack(agent.issued[:total]))
    assert np.all((received > HIGH) | (received < LOW))
    np.testing.assert_array_equal(stored_transitions(trainer)["actions"], received)


@pytest.mark.parametrize(
    "agent, wide",
    [
        # φ = 3: standard deviation e^1.5 ≈ 4.5 against box widths of 3.
        ("smoothie", {"initial_log_variance": 3.0}),
        # OU σ = 5: each episode's first noise is 5·ε against box widths of 3, and it grows from
        # there. Measured: 0.86 of the coordinates sit on a bound.
        ("ddpg", {"ou_stddev": 5.0}),
    ],
)
def test_a_widely_exploring_agent_stores_the_clipped_actions_the_env_received(tmp_path, agent, wide):
    """The real agents with wide exploration: most exploring actions are clipped, and the replay
    holds exactly what the env received."""
    total = 40
    hp = loop_hparams(agent=agent, total_steps=total, **wide)
    trainer = training.Trainer(ENV_ID, hp, 0, tmp_path)
    trainer.run()
    received = np.stack(trainer.env.unwrapped.received)
    assert received.shape == (total, 2)
    np.testing.assert_array_equal(stored_transitions(trainer)["actions"], received)
    assert np.all(received >= LOW) and np.all(received <= HIGH)
    at_bounds = np.mean((received == LOW) | (received == HIGH))
    assert at_bounds > 0.4, at_bounds  # clipped: without the clip none would sit on a bound
