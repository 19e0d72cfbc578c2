"""Warehouse I/O: engine, migrations, extraction queries and transactional writes."""
