"""One module per scene; :mod:`sim.registry` maps names to classes."""
