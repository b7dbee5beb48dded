"""Loading: files become model inputs (:mod:`~.images`: safe decoding with pixel-bomb
guards; :mod:`~.dataset`: torch datasets over a manifest or over files;
:mod:`~.image_cache`: decoded images kept between epochs; :mod:`~.folders`: input
discovery and the output-path guard; :mod:`~.file_errors`: the error codes)."""
