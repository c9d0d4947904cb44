"""From finished runs to tables and plots: reading runs, pooling, seed statistics, published numbers,
and AEKT's serialization analysis."""
