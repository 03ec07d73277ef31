"""Training: read and split the data, fine-tune text and image models, fit the linear member and the
temperature on the dev slice, score a model (in-process or through the gateway)."""
