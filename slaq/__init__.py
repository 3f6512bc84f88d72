"""slaq-repro: quality-driven scheduling of iterative ML training (SLAQ, SoCC'17) on Spark."""

__version__ = "0.1.0"
