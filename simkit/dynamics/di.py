r"""Dynamic inversion (DI) and single-loop DI (SDI): the error dynamics of Podlaski & Machens 2020.

Per layer (W (d_out, d_in), feedback B (d_in, d_out), leak :math:`\alpha`), an output-side
controller :math:`u` (d_out; ``ry`` in the original) and the input-side error :math:`r`
(d_in; ``rx``) follow

.. math::

    \dot u &= -\alpha u + W g(r) - \delta                               && \text{(Eq. 5)}\\
    \dot r &= -r + B u                                                 && \text{(Eq. 6)}

with :math:`g` the identity (linear DI) or tanh. The linear fixed point is
:math:`u^* = (W B - \alpha I)^{-1}\delta`, :math:`r^* = B u^*`: NDI (Eq. 7). Its Jacobian on the
state (r, u) is :math:`M = [[-I, B], [W, -\alpha I]]`; the ODE is stable iff
:math:`\max \operatorname{Re}\lambda(M) < 0` (the spectral abscissa).

Integration as the original: zero initial state, ``n_steps - 1`` = 999 semi-implicit Euler steps
of ``dt`` = 0.5 (u first, then r with the new u), no convergence test. The one-step map on (r, u)
is linear in the state,

.. math::

    \begin{pmatrix} r \\ u\end{pmatrix}_{t+1} =
    \begin{pmatrix} (1-\Delta t) I + \Delta t^2 B W & \Delta t (1-\Delta t\alpha) B \\
                    \Delta t W & (1-\Delta t \alpha) I \end{pmatrix}
    \begin{pmatrix} r \\ u\end{pmatrix}_{t} + \text{const},

so the loop can diverge while the ODE is stable (B = -W^T, dt = 0.5: once
:math:`\sigma_{\max}(W) \gtrsim 3.46`); :func:`euler_radius` gives that map's spectral radius and
the loop stops with :class:`~simkit.errors.NumericalError` when the state blows up.

SDI (two hidden layers, one loop from the output controller :math:`r_z` to hidden layer 1):

.. math::

    r_x &\leftarrow r_x + \Delta t(-r_x + B r_z)        \\
    r_y &\leftarrow r_y + \Delta t(-r_y + W_1 g(r_x))   \\
    r_z &\leftarrow r_z + \Delta t(-\alpha r_z + W_2 g(r_y) - \delta)

Jacobian on (r_x, r_y, r_z): :math:`[[-I, 0, B], [W_1, -I, 0], [0, W_2, -\alpha I]]`; the original
never checks it; :func:`sdi_jacobian` lets the task loop do so.

Extension: ``tol`` > 0 stops the DI loop once :math:`\max|r_{t+1}-r_t| \le tol\,\max|r_{t+1}|`.
"""
from __future__ import annotations

import numpy as np

from simkit.backend import Kernel
from simkit.errors import NumericalError, UserError
from simkit.kernels.di import BLOWUP, CHECK_EVERY, di_loop, matvec_t, sdi_loop

DT = 0.5          # Euler step (the original's module constant; June-2020 version: 0.1)
N_STEPS = 1000    # the loop runs t = 1 .. N_STEPS-1 (999 steps); June-2020: 10000


def di_jacobian(W, B, alpha):
    """M = [[-I, B], [W, -alpha I]] on the state (r, u) (host arrays)."""
    d_out, d_in = W.shape
    return np.block([[-np.eye(d_in), B], [W, -alpha * np.eye(d_out)]])


def sdi_jacobian(W1, W2, B, alpha):
    """The SDI loop's Jacobian on (r_x, r_y, r_z) (host arrays)."""
    n1, n2, n3 = W1.shape[1], W1.shape[0], W2.shape[0]
    z = np.zeros
    return np.block([[-np.eye(n1), z((n1, n2)), B],
                     [W1, -np.eye(n2), z((n2, n3))],
                     [z((n3, n1)), W2, -alpha * np.eye(n3)]])


def spectral_abscissa(M) -> float:
    """max Re lambda(M) (the original's ``get_maxreal_eig``)."""
    return float(np.max(np.linalg.eigvals(M).real))


def di_abscissa(W, B, alpha) -> float:
    r"""``spectral_abscissa(di_jacobian(W, B, alpha))`` from a d x d eigenproblem, d = min(d_in, d_out).

    An eigenvector (r, u) of M has :math:`r = B u / (\lambda + 1)`, so
    :math:`W B u = (\lambda + 1)(\lambda + \alpha) u`. By the Schur complement,
    :math:`\det(M - \lambda I) = \pm(\lambda+1)^{d_{in}-d_{out}}\det((\lambda+1)(\lambda+\alpha) I - W B)`
    (for :math:`d_{out} > d_{in}`: :math:`(\lambda+\alpha)^{d_{out}-d_{in}}` and :math:`B W`): each
    eigenvalue :math:`\mu` of the product gives the two roots
    :math:`\lambda = \tfrac12\big(-(1+\alpha) \pm \sqrt{(1-\alpha)^2 + 4\mu}\big)`, the rest
    are :math:`-1` (or :math:`-\alpha`).
    """
    d_out, d_in = W.shape
    mu = np.linalg.eigvals(W @ B if d_out <= d_in else B @ W).astype(complex)
    root = np.sqrt((1.0 - alpha) ** 2 + 4.0 * mu)
    s = float(np.max((-(1.0 + alpha) + root).real) / 2.0)        # the + root has the larger Re
    if d_in != d_out:
        s = max(s, -1.0 if d_in > d_out else -float(alpha))
    return s


def sdi_abscissa(W1, W2, B, alpha) -> float:
    r"""``spectral_abscissa(sdi_jacobian(W1, W2, B, alpha))`` from an n3 x n3 eigenproblem.

    An eigenvector gives :math:`r_x = B r_z/(\lambda+1)`, :math:`r_y = W_1 r_x/(\lambda+1)`, so
    :math:`C r_z = (\lambda+1)^2(\lambda+\alpha) r_z` with :math:`C = W_2 W_1 B`, and
    :math:`\det(M - \lambda I) = \pm(\lambda+1)^{n_1+n_2-2n_3}\det((\lambda+1)^2(\lambda+\alpha)I - C)`
    when :math:`n_1 + n_2 \ge 2 n_3` (otherwise the full eigenproblem is solved). Each eigenvalue
    :math:`\mu` of C gives the three roots of
    :math:`\lambda^3 + (2+\alpha)\lambda^2 + (1+2\alpha)\lambda + \alpha - \mu`
    (eigenvalues of its companion matrix, all :math:`\mu` in one batched call); the rest are -1.
    """
    n1, n2, n3 = W1.shape[1], W1.shape[0], W2.shape[0]
    if n1 + n2 < 2 * n3:
        return spectral_abscissa(sdi_jacobian(W1, W2, B, alpha))
    mu = np.linalg.eigvals(W2 @ W1 @ B).astype(complex)
    comp = np.zeros((n3, 3, 3), dtype=complex)
    comp[:, 0, 0], comp[:, 0, 1], comp[:, 0, 2] = -(2.0 + alpha), -(1.0 + 2.0 * alpha), mu - alpha
    comp[:, 1, 0] = comp[:, 2, 1] = 1.0
    s = float(np.max(np.linalg.eigvals(comp).real))
    return max(s, -1.0) if n1 + n2 > 2 * n3 else s


def euler_radius(W, B, alpha, dt=DT) -> float:
    """Spectral radius of the linear DI Euler map (> 1: the discrete loop diverges)."""
    d_out, d_in = W.shape
    a = 1.0 - dt * alpha
    T = np.block([[(1 - dt) * np.eye(d_in) + dt * dt * B @ W, dt * a * B],
                  [dt * W, a * np.eye(d_out)]])
    return float(np.max(np.abs(np.linalg.eigvals(T))))


def di_reference(xp, W, B, delta, dims, alpha, dt, n_steps, g_tanh, tol, u, r, info):
    """Readable DI loop over a batch (rows of ``delta``); writes ``u``, ``r`` and ``info`` in place.

    ``u`` (n, d_out) and ``r`` (n, d_in) hold the initial state (zeros in the original);
    ``info`` = [steps taken, step at which it diverged or -1]; ``dims`` = (n, d_out, d_in) is
    for the Numba twin, which sees flat arrays.
    """
    info[0], info[1] = 0, -1
    for t in range(1, int(n_steps)):
        g = xp.tanh(r) if g_tanh else r
        u += dt * (-alpha * u + g @ W.T - delta)                    # Eq. (5)
        r_new = r + dt * (-r + u @ B.T)                             # Eq. (6), with the new u
        step = float(xp.abs(r_new - r).max()) if tol > 0 else 1.0
        r[...] = r_new
        info[0] = t
        if t % CHECK_EVERY == 0 or tol > 0:
            size = float(xp.abs(r).max()) + float(xp.abs(u).max())
            if not size < BLOWUP:                                    # catches NaN too
                info[1] = t
                return
            if tol > 0 and step <= tol * float(xp.abs(r).max()):
                return


def sdi_loop_reference(xp, W1, W2, B, delta, dims, alpha, dt, n_steps, g_tanh, rx, ry, rz, info):
    """Readable SDI loop, in place on (r_x, r_y, r_z); ``info`` as in :func:`di_reference`."""
    g = (lambda a: xp.tanh(a)) if g_tanh else (lambda a: a)      # noqa: E731
    info[0], info[1] = 0, -1
    for t in range(1, int(n_steps)):
        rx += dt * (-rx + rz @ B.T)
        ry += dt * (-ry + g(rx) @ W1.T)
        rz += dt * (-alpha * rz + g(ry) @ W2.T - delta)
        info[0] = t
        if t % CHECK_EVERY == 0 and not float(xp.abs(rz).max()) < BLOWUP:
            info[1] = t
            return


DI_KERNEL = Kernel("di_euler", reference=di_reference, loop=di_loop, cuda=None,
                   helpers=(matvec_t,))
SDI_KERNEL = Kernel("sdi_euler", reference=sdi_loop_reference, loop=sdi_loop, cuda=None,
                    helpers=(matvec_t,))


def sdi_reference(xp, W1, W2, B, delta, alpha, dt, n_steps, g_tanh, bk=None):
    """SDI for a batch (rows of ``delta``) from zero state; returns (r_x, r_y).

    With a backend ``bk`` the loop runs as its kernel (the Numba twin on numba).
    """
    n = delta.shape[0]
    rx = xp.zeros((n, W1.shape[1]), dtype=delta.dtype)
    ry = xp.zeros((n, W1.shape[0]), dtype=delta.dtype)
    rz = xp.zeros_like(delta)
    info = np.zeros(2)
    dims = np.array([n, W1.shape[1], W1.shape[0], W2.shape[0]], dtype=np.int64)
    if bk is not None and bk.name == "numba":
        run = bk.kernel(SDI_KERNEL)
        c = np.ascontiguousarray
        run(c(W1), c(W2), c(B), c(delta), dims, float(alpha), float(dt), int(n_steps),
            int(g_tanh), rx, ry, rz, info)
    else:
        sdi_loop_reference(xp, W1, W2, B, delta, dims, alpha, dt, n_steps, g_tanh, rx, ry, rz, info)
    if info[1] >= 0 or not bool(xp.isfinite(rx).all()):
        raise NumericalError(f"SDI Euler loop diverged at step {int(info[1])} (dt={dt}, alpha={alpha}); "
                             "the loop's Jacobian (sdi_jacobian) is unstable or dt too large")
    return rx, ry


class DISolver:
    """Batched DI on a backend: ``solver(W, B, alpha, delta) -> r`` (n, d_in).

    Uses the backend's DI kernel (reference on numpy, Numba twin on numba; CuPy runs the
    reference, since an Euler loop of matrix products is not an elementwise kernel).
    """

    def __init__(self, bk, dt=DT, n_steps=N_STEPS, g="linear", tol=0.0):
        if g not in ("linear", "tanh"):
            raise UserError(f"DI nonlinearity must be 'linear' or 'tanh', got {g!r}")
        if not (dt > 0 and n_steps >= 1):
            raise UserError(f"DI needs dt > 0 and n_steps >= 1, got {dt}, {n_steps}")
        self.bk, self.dt, self.n_steps, self.g_tanh, self.tol = bk, dt, int(n_steps), g == "tanh", tol
        self._run = bk.kernel(DI_KERNEL)
        self.last_steps = 0

    def __call__(self, W, B, alpha, delta):
        xp = self.bk.xp
        n, (d_out, d_in) = delta.shape[0], W.shape
        u = xp.zeros((n, d_out), dtype=delta.dtype)
        r = xp.zeros((n, d_in), dtype=delta.dtype)
        info = np.zeros(2) if self.bk.name != "cupy" else [0, -1]
        dims = np.array([n, d_out, d_in], dtype=np.int64)
        self._run(xp.ascontiguousarray(W), xp.ascontiguousarray(B), xp.ascontiguousarray(delta),
                  dims, float(alpha), self.dt, self.n_steps, int(self.g_tanh), float(self.tol),
                  u, r, info)
        self.last_steps = int(info[0])
        if info[1] >= 0 or not bool(xp.isfinite(r).all()):
            rad = euler_radius(self.bk.to_host(W), self.bk.to_host(B), alpha, self.dt)
            raise NumericalError(f"DI Euler loop diverged at step {int(info[1])} (dt={self.dt}, "
                                 f"alpha={alpha}, Euler-map radius {rad:.3g} > 1 means dt is "
                                 "too large for these weights); lower dt or the weight scale")
        return r
