"""Jobs built on the classifier: batch jobs, evaluate, train, features, quantize, bench, model info."""
