//! Redis store tests.
