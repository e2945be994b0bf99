"""Developer tooling, not the product's API: the throwaway PostgreSQL cluster (tests, the
benchmarks and the demo start one) and the generated files (schema dump, SQL API reference,
the analytics examples)."""
