r"""Fused Adam step (Kingma & Ba 2015, Algorithm 1), in place, one parameter tensor at a time.

.. math::

    g &\leftarrow g + \lambda\,p                         &&\text{(coupled L2 weight decay)}\\
    m &\leftarrow \beta_1 m + (1-\beta_1)\,g             &&\text{(1st moment)}\\
    v &\leftarrow \beta_2 v + (1-\beta_2)\,g^2           &&\text{(2nd moment)}\\
    p &\leftarrow p - \frac{\eta}{c_1}\,\frac{m}{\sqrt{v}/\sqrt{c_2} + \epsilon}

Arguments: inputs ``g, lr, beta1, beta2, eps, c1, c2, wd``, then the in-place outputs
``p, m, v`` (the order every twin shares). Here :math:`c_1 = 1-\beta_1^t`, :math:`c_2 = 1-\beta_2^t` (bias correction; both 1 without it).
This is PyTorch's arrangement of the same update, so runs match torch-based originals to
round-off. One pass over memory instead of the ~10 temporaries of the array version.
"""
import math

from simkit.backend import Kernel


def adam_reference(xp, g, lr, beta1, beta2, eps, c1, c2, wd, p, m, v):
    """Readable definition; updates ``p``, ``m``, ``v`` in place."""
    if wd != 0.0:
        g = g + wd * p
    m *= beta1
    m += (1.0 - beta1) * g
    v *= beta2
    v += (1.0 - beta2) * g * g
    p -= (lr / c1) * m / (xp.sqrt(v) / math.sqrt(c2) + eps)


def adam_loop(g, lr, beta1, beta2, eps, c1, c2, wd, p, m, v):
    """Numba twin over flat arrays."""
    step = lr / c1
    sc2 = math.sqrt(c2)
    for i in range(p.size):
        gi = g[i] + wd * p[i]
        m[i] = beta1 * m[i] + (1.0 - beta1) * gi
        v[i] = beta2 * v[i] + (1.0 - beta2) * gi * gi
        p[i] -= step * m[i] / (math.sqrt(v[i]) / sc2 + eps)


ADAM = Kernel(
    "adam_step",
    reference=adam_reference,
    loop=adam_loop,
    cuda=(
        "T g, T lr, T beta1, T beta2, T eps, T c1, T c2, T wd",
        "T p, T m, T v",
        """
        T gi = g + wd * p;
        m = beta1 * m + (1 - beta1) * gi;
        v = beta2 * v + (1 - beta2) * gi * gi;
        p -= (lr / c1) * m / (sqrt(v) / sqrt(c2) + eps);
        """,
    ),
)
