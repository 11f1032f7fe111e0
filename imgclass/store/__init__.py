"""Models by name: catalog, cache, downloads, the model index, optimised graphs and the loader."""
