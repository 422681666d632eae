"""OGC API - Features (Parts 1, 2 and 3) and MVT tiles over every registered layer."""
