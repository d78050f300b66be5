"""ODE integrators and controller loops (Euler, Euler-Maruyama, DFC controller, SSA)."""
