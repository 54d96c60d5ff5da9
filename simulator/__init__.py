"""edgesim simulator."""
