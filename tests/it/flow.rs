//! The whole flow against the simulator.
