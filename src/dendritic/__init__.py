"""Dendritic artificial neural networks (Chavlis & Poirazi, Nature Communications 2025)."""

__version__ = "0.1.0"
