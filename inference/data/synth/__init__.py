"""Virtual Europe: synthetic terrain, climate, land cover, imagery, flora, habitats and observations.

Each module builds one layer from the layers below it; ``inference.data.region`` runs them in order
and writes the result. Every random draw comes from a ``numpy.random.Generator`` derived from the
region seed and the layer name (``common.rng_for``), so a layer does not change when another does.
"""
