"""Layer 1, the artifact contract between training and serving: the model card, the
`<name>/<version>/` folder layout, the signature names and the image preprocessing. Training
imports only this layer (and core's errors, through it)."""
