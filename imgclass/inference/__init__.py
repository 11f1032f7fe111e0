"""From images to probabilities: the batch pipeline, ensembles and TTA, embeddings, explanations."""
