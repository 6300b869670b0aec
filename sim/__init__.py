"""Jumeau's simulator: PyBullet scenes that publish honest ground truth onto the bus."""
