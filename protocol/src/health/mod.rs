//! Health: signed reports and heartbeats, fleet certificates, halt and resume
//! directives, per-wave aggregation, and the gate decision.
