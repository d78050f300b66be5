"""simkit: biologically plausible credit assignment, written out explicitly on NumPy/CuPy."""

__version__ = "0.1.0"
