"""simkit: biologically plausible credit assignment, written out explicitly on NumPy/CuPy.

The package is layered; each layer imports only from those below it (``lint-imports`` checks
this, docs/architecture.md explains why):

``cli``, ``commands``   the ``simkit`` command and its subcommands
``tasks``               the dynamic-inversion tasks and models, the figure driver
``training``            the one training loop, its schedules, run directories
``rules``               one module per learning-rule family: the derivation and its updates
``dynamics``, ``optim`` ODE integrators (DFC's controller, dynamic inversion, SSA); optimisers
``nn``                  activations, losses, initialisers, the MLP, invertible nets
``kernels``             the fast (Numba, CUDA) twins of the hot loops
``backend``             NumPy / NumPy + Numba / CuPy; ``backend.jit`` is the only Numba import
``data``, ``metrics``, ``errors``
"""

__version__ = "0.1.0"
