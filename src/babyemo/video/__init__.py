"""Infant video: frames read from a recording or a live camera, face tracks, episodes and a
timeline (issue 17)."""
