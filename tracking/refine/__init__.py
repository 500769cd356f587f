"""The early-exit refinement cascade of the head pose and its learned exit gates."""
