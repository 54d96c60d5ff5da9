"""Device-side files, sent to the board as they are. Only ``protocol`` is also imported by the host."""
