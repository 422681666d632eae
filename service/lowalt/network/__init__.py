"""The low-altitude route network: vertiports, corridors generated along guide lines with
flight layers by heading, planners' edits as versions, and 4D reservations of (edge, time)
capacity that approve flights on it. ``graph`` is pure geometry and routing;
``service.travel_time_matrix`` gives travel times between positions over the network."""
