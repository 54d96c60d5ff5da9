"""edgesim workloads."""
