"""The hot loops (the compiled ``_fast``: int fd in, counts out) and the choice of engine."""
