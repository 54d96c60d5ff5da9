"""edgesim ports."""
