//! Shared helpers of the end-to-end tests: building the binaries and running baton inside a sandbox.
