"""GeoFlora data: the Virtual Europe generator (``region``, ``synth``), EUNIS habitats and readers."""
