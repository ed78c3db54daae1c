//! Tests that span more than one dinoedge crate live in `tests/tests/`; this library is empty.
