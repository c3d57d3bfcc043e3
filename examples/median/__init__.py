"""Median estimation (paper section 5.1): sum, attention and Equilibrium Aggregation compared."""
