"""Jets (supplement D.1, eqs. 10-11) against tf.GradientTape."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from smoothie_tf.jets import JetDense, action_jet
from smoothie_tf.networks import SmoothedCritic

TOLERANCE = {"float64": 1e-9, "float32": 1e-4}


def autodiff_value_grad_hess(critic, states, actions):
    """q, ∇a q and ∇²a q by nested tapes and a batch Jacobian."""
    with tf.GradientTape() as outer:
        outer.watch(actions)
        with tf.GradientTape() as inner:
            inner.watch(actions)
            q = critic(states, actions)
        g = inner.gradient(q, actions)  # examples are independent: d(sum q)/da_b = dq_b/da_b
    return q, g, outer.batch_jacobian(g, actions)


def relative_error(x, reference):
    x, reference = np.asarray(x, np.float64), np.asarray(reference, np.float64)
    return np.linalg.norm(x - reference) / max(np.linalg.norm(reference), 1e-300)


def random_critic(action_dim, hidden, dtype, activation="tanh", seed=0):
    keras.utils.set_random_seed(seed)
    return SmoothedCritic(
        action_dim=action_dim, state_embedding=24, hidden=hidden, activation=activation, dtype=dtype
    )


def random_inputs(batch, state_dim, action_dim, dtype, seed=1):
    rng = np.random.default_rng(seed)
    states = tf.constant(rng.normal(size=(batch, state_dim)), dtype)
    actions = tf.constant(rng.normal(size=(batch, action_dim)), dtype)
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
    np.testing.assert_allclose(h_diag, np.diagonal(h, axis1=1, axis2=2), rtol=TOLERANCE[dtype], atol=1e-12)
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
    layer_in, layer_out = JetDense(6, "linear", dtype="float64"), JetDense(1, "linear", dtype="float64")
    features = tf.constant(np.random.default_rng(0).normal(size=(3, 4)))
    actions = tf.constant(np.random.default_rng(1).normal(size=(3, 2)))
    layer_in.build((None, 6))
    layer_out.build((None, 6))
    q, g, h = layer_out.head(layer_in.propagate(action_jet(features, actions)))
    kernel = layer_in.kernel.numpy() @ layer_out.kernel.numpy()  # [6, 1]: q is affine in a
    np.testing.assert_allclose(g, np.broadcast_to(kernel[4:, 0], (3, 2)), rtol=1e-12)
    np.testing.assert_array_equal(h, np.zeros((3, 2, 2)))
    inputs = np.concatenate([features, actions], axis=1)
    expected = (inputs @ layer_in.kernel.numpy() + layer_in.bias.numpy()) @ layer_out.kernel.numpy()
    np.testing.assert_allclose(q, expected[:, 0] + layer_out.bias.numpy()[0], rtol=1e-12)


def test_action_jet_starts_with_identity_on_the_action_block():
    features, actions = tf.ones([2, 3]), tf.ones([2, 2])
    jet = action_jet(features, actions)
    np.testing.assert_array_equal(jet.grad, [[0, 0, 0, 1, 0], [0, 0, 0, 0, 1]])
    assert jet.hess is None


def test_jet_dense_rejects_unknown_activation():
    with pytest.raises(ValueError, match="activation"):
        JetDense(4, "softplus")


def test_value_grad_hess_compiles_with_xla():
    critic = random_critic(3, (20, 16), "float32")
    states, actions = random_inputs(8, 5, 3, "float32")
    compiled = tf.function(lambda s, a: critic.value_grad_hess(s, a), jit_compile=True)
    _, g, h = compiled(states, actions)
    _, g_eager, h_eager = critic.value_grad_hess(states, actions)
    assert relative_error(g, g_eager) < 1e-5 and relative_error(h, h_eager) < 1e-5
