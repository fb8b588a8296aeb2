"""Environment variables the command line reads, shared with the service that starts it as a child process."""

TRAIN_DB_ENV = "GMTROUTER_TRAIN_DB"  # `gmtrouter train --from-db`: a database URL, kept off the command line
