"""torch only: the refiner U-Net, its training data and training loop, its ONNX graph."""
