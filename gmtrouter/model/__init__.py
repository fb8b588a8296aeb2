"""Graph encoders of the router: the heterogeneous graph transformer and its building blocks."""
