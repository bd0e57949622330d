"""Jets (supplement D.1, eqs. 10-11) against tf.GradientTape, for one network and a population."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from smoothie_tf.jets import MemberDense, action_jet
from smoothie_tf.networks import SmoothedCritic

TOLERANCE = {"float64": 1e-9, "float32": 1e-4}


def autodiff_value_grad_hess(critic, states, actions):
    """q, ∇a q and ∇²a q by nested tapes and a batch Jacobian; the leading axes of the actions
    (members and examples, or examples) are flattened into the Jacobian's batch."""
    flat = tf.reshape(actions, [-1, actions.shape[-1]])
    with tf.GradientTape() as outer:
        outer.watch(flat)
        with tf.GradientTape() as inner:
            inner.watch(flat)
            q = critic(states, tf.reshape(flat, actions.shape))
        g = inner.gradient(q, flat)  # examples are independent: d(sum q)/da_b = dq_b/da_b
    h = outer.batch_jacobian(g, flat)
    return q, tf.reshape(g, actions.shape), tf.reshape(h, [*actions.shape, actions.shape[-1]])


def relative_error(x, reference):
    x, reference = np.asarray(x, np.float64), np.asarray(reference, np.float64)
    return np.linalg.norm(x - reference) / max(np.linalg.norm(reference), 1e-300)


def random_critic(action_dim, hidden, dtype, activation="tanh", seed=0, members=None):
    keras.utils.set_random_seed(seed)
    return SmoothedCritic(
        action_dim=action_dim,
        state_embedding=24,
        hidden=hidden,
        activation=activation,
        dtype=dtype,
        members=members,
    )


def random_inputs(batch, state_dim, action_dim, dtype, seed=1, members=None):
    rng = np.random.default_rng(seed)
    leading = (batch,) if members is None else (members, batch)
    states = tf.constant(rng.normal(size=(*leading, state_dim)), dtype)
    actions = tf.constant(rng.normal(size=(*leading, action_dim)), dtype)
    return states, actions


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("hidden", [(20,), (20, 16), (20, 16, 12)], ids=["1hidden", "2hidden", "3hidden"])
@pytest.mark.parametrize("action_dim", [1, 3, 6, 17])
@pytest.mark.parametrize("batch", [1, 64])
def test_value_grad_hess_matches_autodiff(dtype, hidden, action_dim, batch):
    critic = random_critic(action_dim, hidden, dtype)
    states, actions = random_inputs(batch, 5, action_dim, dtype)
    q_ref, g_ref, h_ref = autodiff_value_grad_hess(critic, states, actions)

    q, g, h = critic.value_grad_hess(states, actions)
    assert (
        q.shape == (batch,) and g.shape == (batch, action_dim) and h.shape == (batch, action_dim, action_dim)
    )
    assert relative_error(q, q_ref) < TOLERANCE[dtype]
    assert relative_error(g, g_ref) < TOLERANCE[dtype]
    assert relative_error(h, h_ref) < TOLERANCE[dtype]

    q_diag, g_diag, h_diag = critic.value_grad_hess(states, actions, diagonal=True)
    assert h_diag.shape == (batch, action_dim)
    assert relative_error(h_diag, np.diagonal(h_ref, axis1=1, axis2=2)) < TOLERANCE[dtype]
    # Both sum the same terms in another order: round-off relative to the Hessian's scale.
    atol = TOLERANCE[dtype] * np.abs(h).max()
    np.testing.assert_allclose(h_diag, np.diagonal(h, axis1=1, axis2=2), rtol=TOLERANCE[dtype], atol=atol)
    np.testing.assert_array_equal(q_diag, q)
    np.testing.assert_array_equal(g_diag, g)


def test_paper_critic_matches_autodiff_in_float64():
    critic = SmoothedCritic(action_dim=17, dtype="float64")  # 400 tanh; concat; 300 tanh; linear
    states, actions = random_inputs(8, 376, 17, "float64")
    _, g_ref, h_ref = autodiff_value_grad_hess(critic, states, actions)
    _, g, h = critic.value_grad_hess(states, actions)
    assert relative_error(g, g_ref) < 1e-9
    assert relative_error(h, h_ref) < 1e-9
    assert np.abs(h_ref).max() > 1e-6  # the check is not vacuous


def test_hessian_is_symmetric_and_nonzero():
    critic = random_critic(4, (20, 16), "float64")
    states, actions = random_inputs(16, 5, 4, "float64")
    _, _, h = critic.value_grad_hess(states, actions)
    np.testing.assert_allclose(h, np.swapaxes(h, 1, 2), atol=1e-14)
    assert np.abs(h).max() > 1e-4


def test_relu_critic_jet_matches_autodiff_and_has_zero_hessian_with_one_hidden_layer():
    critic = random_critic(3, (20,), "float64", activation="relu")
    states, actions = random_inputs(32, 5, 3, "float64")
    _, g_ref, h_ref = autodiff_value_grad_hess(critic, states, actions)
    _, g, h = critic.value_grad_hess(states, actions)
    assert relative_error(g, g_ref) < 1e-9
    np.testing.assert_array_equal(h, np.zeros_like(h))
    np.testing.assert_allclose(h_ref, 0.0, atol=1e-12)


def test_linear_hidden_layer_jets():
    def layer(units, index):
        return MemberDense(units, "linear", seeds=[4, 5], layer_index=index, dtype="float64")

    layer_in, layer_out = layer(6, 0), layer(1, 1)
    features = tf.constant(np.random.default_rng(0).normal(size=(2, 3, 4)))
    actions = tf.constant(np.random.default_rng(1).normal(size=(2, 3, 2)))
    layer_in.build((2, None, 6))
    layer_out.build((2, None, 6))
    q, g, h = layer_out.head(layer_in.propagate(action_jet(features, actions)))
    assert (q.shape, g.shape, h.shape) == ((2, 3), (2, 3, 2), (2, 3, 2, 2))
    inputs = np.concatenate([features, actions], axis=-1)
    for p in range(2):  # q is affine in a: its gradient is the action's rows of K_in K_out
        k_in, b_in = layer_in.kernel.numpy()[p], layer_in.bias.numpy()[p]
        k_out, b_out = layer_out.kernel.numpy()[p], layer_out.bias.numpy()[p]
        kernel = k_in @ k_out  # [6, 1]
        np.testing.assert_allclose(g[p], np.broadcast_to(kernel[4:, 0], (3, 2)), rtol=1e-12)
        np.testing.assert_allclose(q[p], ((inputs[p] @ k_in + b_in) @ k_out + b_out)[:, 0], rtol=1e-12)
    np.testing.assert_array_equal(h, np.zeros((2, 3, 2, 2)))


def test_action_jet_starts_with_identity_on_the_action_block():
    features, actions = tf.ones([2, 4, 3]), tf.ones([2, 4, 2])
    jet = action_jet(features, actions)
    np.testing.assert_array_equal(jet.grad, np.tile([[0, 0, 0, 1, 0], [0, 0, 0, 0, 1]], (2, 1, 1)))
    assert jet.hess is None


def test_member_dense_rejects_unknown_activation_initializer_and_seeds():
    with pytest.raises(ValueError, match="activation"):
        MemberDense(4, "softplus", seeds=[0], layer_index=0)
    with pytest.raises(ValueError, match="initializer"):
        MemberDense(4, "tanh", seeds=[0], layer_index=0, initializer="he_normal")
    with pytest.raises(ValueError, match="seeds"):
        MemberDense(4, "tanh", seeds=[], layer_index=0)
    with pytest.raises(ValueError, match="seeds"):
        MemberDense(4, "tanh", seeds=[-1], layer_index=0)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("hidden", [(20,), (20, 16)], ids=["1hidden", "2hidden"])
@pytest.mark.parametrize("action_dim", [1, 3, 6])
@pytest.mark.parametrize("batch", [1, 16])
def test_population_value_grad_hess_matches_autodiff_per_member(dtype, hidden, action_dim, batch):
    members = 3
    critic = random_critic(action_dim, hidden, dtype, members=members)
    states, actions = random_inputs(batch, 5, action_dim, dtype, members=members)
    q_ref, g_ref, h_ref = autodiff_value_grad_hess(critic, states, actions)

    q, g, h = critic.value_grad_hess(states, actions)
    assert (q.shape, g.shape) == ((members, batch), (members, batch, action_dim))
    assert h.shape == (members, batch, action_dim, action_dim)
    _, _, h_diag = critic.value_grad_hess(states, actions, diagonal=True)
    assert h_diag.shape == (members, batch, action_dim)
    for p in range(members):
        assert relative_error(q[p], q_ref[p]) < TOLERANCE[dtype]
        assert relative_error(g[p], g_ref[p]) < TOLERANCE[dtype]
        assert relative_error(h[p], h_ref[p]) < TOLERANCE[dtype]
        assert relative_error(h_diag[p], np.diagonal(h_ref[p], axis1=1, axis2=2)) < TOLERANCE[dtype]
    assert np.abs(h_ref).max() > 1e-4  # the check is not vacuous


@pytest.mark.parametrize("diagonal", [False, True], ids=["full", "diagonal"])
def test_population_jets_equal_each_members_own_network(diagonal):
    """Member p of a population gives what a one-member critic with member p's seed gives."""
    seeds = [11, 12, 13]
    population = SmoothedCritic(3, state_embedding=24, hidden=(20, 16), members=3, initial_seeds=seeds)
    states, actions = random_inputs(8, 5, 3, "float32", members=3)
    together = population.value_grad_hess(states, actions, diagonal=diagonal)
    for p, seed in enumerate(seeds):
        single = SmoothedCritic(3, state_embedding=24, hidden=(20, 16), initial_seeds=[seed])
        alone = single.value_grad_hess(states[p], actions[p], diagonal=diagonal)
        for x, y in zip(together, alone, strict=True):
            np.testing.assert_allclose(x[p], y, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("members", [None, 2])
@pytest.mark.parametrize("diagonal", [False, True], ids=["full", "diagonal"])
def test_value_grad_hess_compiles_with_xla(members, diagonal):
    critic = random_critic(3, (20, 16), "float32", members=members)
    states, actions = random_inputs(8, 5, 3, "float32", members=members)
    compiled = tf.function(lambda s, a: critic.value_grad_hess(s, a, diagonal=diagonal), jit_compile=True)
    _, g, h = compiled(states, actions)
    _, g_eager, h_eager = critic.value_grad_hess(states, actions, diagonal=diagonal)
    assert g.shape == g_eager.shape and h.shape == h_eager.shape
    assert relative_error(g, g_eager) < 1e-5 and relative_error(h, h_eager) < 1e-5
