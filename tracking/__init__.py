"""tracking: skip-convolution engine, keypoint network, head and hand pose, early-exit refinement, filtering."""
