"""Everything that runs a model file: one Detections type, the Backend protocol, the Predictor, preprocessing,
the suffix -> backend table and every backend. Imports no build code and, outside the PyTorch backend, no torch."""
