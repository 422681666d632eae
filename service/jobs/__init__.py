"""Background jobs on PostgreSQL: the ``jobs`` table is what users see, procrastinate is
the queue that hands jobs to workers."""
