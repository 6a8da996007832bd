"""Area reports: what lives in a drawn area (species, habitats, indicators, traits), from a run's
assemblage stores and layers through a per-block report index."""
