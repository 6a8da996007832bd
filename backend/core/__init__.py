"""The core every other layer may import: settings, the data layout, the error hierarchy, layer
records and atomic file writing. It imports nothing else of GeoFlora."""
