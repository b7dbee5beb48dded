"""Preparation: a dataset folder becomes a manifest with a seeded, stratified, leak-free
split (:mod:`~.scan`, :mod:`~.manifest`, :mod:`~.split`, :mod:`~.prepare`, face boxes with
:mod:`~.face_index`, metadata CSVs with :mod:`~.metadata`); :mod:`~.lookup` says which
manifest a command uses."""
