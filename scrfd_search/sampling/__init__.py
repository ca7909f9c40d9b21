"""Drawing architectures inside a FLOPs budget: uniform, share-guided (step 2) and budget refits."""
