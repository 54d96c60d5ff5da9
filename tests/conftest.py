"""Shared pytest set-up. Room-specific fixtures live in their own support modules."""
from __future__ import annotations

import os

import matplotlib

os.environ.setdefault("MPLBACKEND", "Agg")
matplotlib.use("Agg")
