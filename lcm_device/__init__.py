"""lcm device code."""
