//! End-to-end tests for anyforge live in `tests/tests/`.
