"""Inspection: what a dataset holds and what is wrong with it (:mod:`~.report`: counts,
formats, duplicates and leaks, demographics; :mod:`~.hashing`: exact and perceptual
hashes; :mod:`~.stock`: stock-photo origins, FER-2013 subsets, copies of train images)."""
