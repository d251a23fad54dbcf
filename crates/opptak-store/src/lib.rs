//! opptak-store
