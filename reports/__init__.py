"""edgesim reports."""
