"""Database access: connections, the embedded server and pgq's named queries."""
