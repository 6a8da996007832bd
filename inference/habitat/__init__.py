"""EUNIS habitat classification from species lists: Pl@ntBERT, its training corpus, baselines,
evaluation and meta-tile inference."""
