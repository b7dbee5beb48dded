"""Datasets: catalogue, download, prepare (manifest + split), inspect, images."""
