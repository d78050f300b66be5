r"""Error propagation by inversion: BP, FA, PBP, NDI, DI and SDI (Podlaski & Machens 2020).

W. F. Podlaski and C. K. Machens, "Biological credit assignment through dynamic inversion of
feedforward networks", NeurIPS 2020, arXiv:2007.05112. Notes on the original code:
``shared/research/dynamic_inversion.md``.

Each rule maps the error :math:`\delta_l` at a layer's output to the error at its input,
:math:`\delta_{l-1}`; the weight update is then :math:`\Delta W_l = \eta\,\delta_l h_{l-1}^\top`
(errors are *target minus output*, so updates are added). With :math:`W` (d_out, d_in),
:math:`B` (d_in, d_out) (the shape of :math:`W^\top`), :math:`h' = f'(a_{l-1})`:

.. math::

    \text{BP:}\quad  \delta_{l-1} &= (W^\top \delta_l)\odot h'                         \\
    \text{FA:}\quad  \delta_{l-1} &= (B \delta_l)\odot h'                              \\
    \text{PBP:}\quad \delta_{l-1} &= (W^{+} \delta_l)\odot h'                          \\
    \text{NDI:}\quad \delta_{l-1} &= B\,(W B - \alpha I)^{-1}\delta_l \odot h'
                                   = (B W - \alpha I)^{-1} B\,\delta_l \odot h'     && \text{(Eq. 7)}

The two NDI forms are equal by the push-through identity; the first solves a d_out x d_out
system (wide or square W), the second a d_in x d_in one (tall W), as the original picks. NDI is
the fixed point of the dynamic-inversion ODE (:mod:`simkit.dynamics.di`), which gives DI; with
:math:`B=-W^\top`, :math:`\alpha=0` it is :math:`W^\top (W W^\top)^{-1}\delta = W^+\delta`
(PBP), and for :math:`\alpha>0` a Tikhonov-regularised pseudo-inverse.

DI runs the dynamics whose fixed point that is (:mod:`simkit.dynamics.di`, Eqs. 5-6) and applies
:math:`h'` once to their input-side state, as the original. SDI inverts the two hidden layers of
a three-layer net in one loop from the output controller to hidden layer 1
(:func:`simkit.dynamics.di.sdi_reference`); its two hidden errors are the loop's states, used
without :math:`h'`:

.. math::

    \text{DI:}\quad  \dot u &= -\alpha u + W g(r) - \delta_l, \quad \dot r = -r + B u,
                     \quad \delta_{l-1} = r \odot h'                                  && \text{(Eqs. 5-6)}\\
    \text{SDI:}\quad \dot r_1 &= -r_1 + B\, r_3, \quad \dot r_2 = -r_2 + W_2\, g(r_1), \quad
                     \dot r_3 = -\alpha r_3 + W_3\, g(r_2) - \delta_3,
                     \quad \delta_1 = r_1,\ \delta_2 = r_2

(:math:`g` the identity or tanh; zero initial state, Euler steps.) :func:`layer_errors` runs the
chosen rule over a whole network, :math:`\delta_L = e` being the output error.

Symbols (batch rows, n samples): ``delta`` (n, d_out), ``dh`` (n, d_in), ``W`` (d_out, d_in),
``B`` (d_in, d_out), ``alpha`` scalar. Returns (n, d_in). Networks are lists of ``W[l-1]``
(:math:`W_l`, (out, in)) and activities ``h[l]`` (rows), as :class:`simkit.nn.MLP`.

Deviations from the original code
---------------------------------
* Batched over samples (rows); the original works on one column vector.
* PBP and NDI solve their square systems by LU (PBP by the normal equations of the smaller side),
  falling back to the original's min-norm ``lstsq`` (machine-epsilon cutoff, ``rcond=-1``) when
  the system is singular or the solution is not finite.
* Feedback initialisers never modify their input (the original's SSA mutates B in place).
* ``dh_mode='code_2021'`` applies :math:`h'` twice for BP/FA/PBP/NDI, as the original's
  nonlinear-regression script does; ``'paper'`` (the default) once, as the paper's equations.
"""
from __future__ import annotations

import numpy as np

from simkit.errors import UserError
from simkit.nn.activations import df_from_output

MODELS = ("BP", "FA", "PBP", "NDI", "DI", "SDI")
FEEDBACK = ("random", "neg-transpose", "optim")


def _lstsq(xp, A, b):
    """Minimum-norm least squares ``A x = b`` (machine-epsilon cutoff, as ``rcond=-1``)."""
    return xp.linalg.lstsq(A, b, rcond=None)[0]


def _solve(xp, A, b):
    """``A x = b`` for square A: LU (10-100x cheaper than lstsq's SVD); lstsq when A is singular
    or the result is not finite."""
    try:
        x = xp.linalg.solve(A, b)
        if bool(xp.isfinite(x).all()):
            return x
    except np.linalg.LinAlgError:
        pass
    return _lstsq(xp, A, b)


def error_bp(xp, W, delta, dh):
    return (delta @ W) * dh                                         # (W^T delta) . h'


def error_fa(xp, B, delta, dh):
    return (delta @ B.T) * dh                                       # (B delta) . h'


def error_pbp(xp, W, delta, dh):
    """Pseudo-backprop: min-norm solution of ``W x = delta`` per sample, times h'.

    W^+ via the normal equations of the smaller side (W^T (W W^T)^-1 for wide W,
    (W^T W)^-1 W^T for tall).
    """
    d_out, d_in = W.shape
    if d_out <= d_in:
        return (W.T @ _solve(xp, W @ W.T, delta.T)).T * dh          # W^T (W W^T)^-1 delta
    return _solve(xp, W.T @ W, W.T @ delta.T).T * dh                # (W^T W)^-1 W^T delta


def ndi_operator(xp, W, B, alpha, delta, form="auto"):
    """The NDI steady state without h': ``B (W B - a I)^-1 delta`` (Eq. 7), batch rows.

    ``form``: 'wide' solves the d_out system, 'tall' the d_in one, 'auto' the smaller (as the
    original: 'wide' when d_out <= d_in).
    """
    d_out, d_in = W.shape
    if form == "auto":
        form = "wide" if d_out <= d_in else "tall"
    if form == "wide":
        M = W @ B - alpha * xp.eye(d_out, dtype=W.dtype)           # W B - alpha I
        return (B @ _solve(xp, M, delta.T)).T                       # Eq. (7)
    if form == "tall":
        M = B @ W - alpha * xp.eye(d_in, dtype=W.dtype)             # B W - alpha I
        return _solve(xp, M, B @ delta.T).T                         # Eq. (7), push-through
    raise UserError(f"NDI form must be 'auto', 'wide' or 'tall', got {form!r}")


def error_ndi(xp, W, B, alpha, delta, dh, form="auto"):
    return ndi_operator(xp, W, B, alpha, delta, form) * dh


def backprop_error(xp, model, W, B, alpha, delta, dh, di_solver=None):
    """The error at a layer's input for ``model`` in :data:`MODELS` (except SDI, a whole-net loop).

    DI ignores ``dh`` like the original (its ODE returns the input-side state); the caller
    applies h' where the original does. ``di_solver(W, B, alpha, delta)`` runs the dynamics.
    """
    if model == "BP":
        return error_bp(xp, W, delta, dh)
    if model == "FA":
        return error_fa(xp, B, delta, dh)
    if model == "PBP":
        return error_pbp(xp, W, delta, dh)
    if model == "NDI":
        return error_ndi(xp, W, B, alpha, delta, dh)
    if model == "DI":
        if di_solver is None:
            raise UserError("model DI needs a di_solver (see simkit.dynamics.di.DISolver)")
        return di_solver(W, B, alpha, delta)
    raise UserError(f"unknown model {model!r}; allowed here: BP, FA, PBP, NDI, DI")


def layer_errors(xp, model, W, B, alpha, e, h, phi, *, B_sdi=None, di=None, dh_mode="paper"):
    r""":math:`\delta_l` of every layer (list index ``l-1``) from the output error :math:`\delta_L = e`.

    ``W``, ``B``: per-layer forward and feedback weights (``B[l-1]`` for :math:`W_l`; unused entries
    None); ``h``: activities ``h[0] = x .. h[L]``; ``phi``: per-layer activations
    (:mod:`simkit.nn.activations`), :math:`h' = \phi_l'` read from ``h[l]``; ``B_sdi``: SDI's loop
    feedback; ``di``: the DI solver (:class:`simkit.dynamics.di.DISolver`).
    """
    L = len(W)
    deltas = [None] * L
    deltas[L - 1] = e
    if model == "SDI":
        from simkit.dynamics.di import sdi_reference
        rx, ry = sdi_reference(xp, W[1], W[2], B_sdi, e, alpha, di.dt, di.n_steps, True, bk=di.bk)
        deltas[0], deltas[1] = rx, ry                               # used directly, no h'
        return deltas
    for l in range(L - 1, 0, -1):
        dh = df_from_output(xp, phi[l - 1], h[l])                   # h' = phi'(a_l)
        d = backprop_error(xp, model, W[l], B[l], alpha, deltas[l], dh, di)
        if model == "DI" or dh_mode == "code_2021":
            d = d * dh                                              # DI: h' once; 2021: h'^2
        deltas[l - 1] = d
    return deltas


def init_feedback(rng, W, kind, scale=0.5, alpha=0.0, ssa_opts=None, retries=3):
    """Feedback weights for forward weights ``W`` (host arrays): a new array, W untouched.

    kind 'random': ``U(-scale, scale)`` in W^T's shape (the original's FA feedback);
    'neg-transpose': ``-W^T``; 'optim': random ``U(-scale, scale)``, then SSA-stabilised for ``alpha``
    (:func:`simkit.dynamics.ssa.stabilise`, bounded retries with derived seeds).
    """
    W = np.asarray(W)
    if kind == "random":
        return rng.uniform(-scale, scale, W.T.shape)
    if kind == "neg-transpose":
        return -W.T.copy()
    if kind == "optim":
        from simkit.dynamics.ssa import ssa_opt, stabilise
        B0 = rng.uniform(-scale, scale, W.T.shape)
        return stabilise(B0, lambda b: ssa_opt(W, b, alpha, **(ssa_opts or {})), rng, retries)
    raise UserError(f"unknown feedback init {kind!r}; allowed: {', '.join(FEEDBACK)}")


def mat_angle(B, W) -> float:
    """Angle in degrees between B and -W^T (the original's ``get_mat_angle(B, -W)``)."""
    from simkit.metrics import angle_deg
    return angle_deg(np, np.asarray(B), -np.asarray(W).T)
