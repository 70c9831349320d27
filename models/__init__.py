"""What a detector is: configs, backbones, SSD head, priors, box coder, decoding."""
