"""Images in, tensors out: decoding, transforms, presets, labels, input sources, datasets, TTA views."""
