//! opptak-recorder
