"""Layer 4, the wire protocols: TensorFlow Serving and the Open Inference Protocol v2, their
types and tensor codecs over the data plane. No FastAPI: the HTTP layer routes to them."""
